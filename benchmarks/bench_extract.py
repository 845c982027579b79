"""Batch extraction throughput: tracks per minute with the `m2e extract` runner, 1 and 2 jobs.

Runs on real clips: by default 24 of the 4Q mp3s in ../shared/data/4q-dev (6 per quadrant, 30 s each). Each
setting runs in a fresh Python process (as `m2e extract` does) into a fresh output folder, after one untimed pass
that reads the files so every setting sees the same warm page cache. Wall time includes starting the workers and
loading one model per worker, as a user running `m2e extract` sees it.

    python benchmarks/bench_extract.py                              # lite, jobs 1 and 2, 24 clips
    python benchmarks/bench_extract.py --n 40 --jobs 1 2 4 --threads 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from paths import shared_data  # benchmarks/paths.py

REPO = Path(__file__).resolve().parents[1]


def pick_clips(folder: Path, n: int) -> list[Path]:
    """``n`` clips spread evenly over the quadrant folders (sorted, deterministic)."""
    quads = sorted(p for p in folder.iterdir() if p.is_dir())
    per = [sorted(q.glob("*.mp3")) for q in quads]
    clips, i = [], 0
    while len(clips) < n and any(i < len(files) for files in per):
        clips += [files[i] for files in per if i < len(files)]
        i += 1
    return clips[:n]


def run_one(list_file: str, extractor: str, device: str, jobs: int, threads: int) -> dict:
    """One timed batch in this (fresh) process; returns the measurements."""
    t0 = time.perf_counter()
    from m2e_plugin import batch

    tracks, _ = batch.expand_inputs([list_file])
    with tempfile.TemporaryDirectory() as out:
        result = batch.run_batch(tracks, out, extractor=extractor, options={"device": device}, jobs=jobs,
                                 threads=threads or None, progress=False)
    import torch

    from m2e_plugin.plugins import get_extractor_class

    # The thread count the runner used (its rule: given > the extractor's torch_threads > 1 per worker > torch's).
    used = threads or getattr(get_extractor_class(extractor), "torch_threads", None) or \
        (1 if jobs > 1 else torch.get_num_threads())
    return {"done": result.done, "failed": result.failed, "wall": time.perf_counter() - t0, "torch_threads": used}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = shared_data()
    ap.add_argument("--data", type=Path, default=shared / "4q-dev",
                    help="folder with Q1..Q4/*.mp3 (default ../shared/data/4q-dev)")
    ap.add_argument("--n", type=int, default=24, help="number of clips (default 24)")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="job counts to measure (default 1 2)")
    ap.add_argument("--threads", type=int, nargs="+", default=[0],
                    help="torch threads per worker; 0 = the runner's default (torch's own for 1 job, 1 per worker "
                         "otherwise)")
    ap.add_argument("--extractor", default="lite")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one", nargs=3, metavar=("LIST", "JOBS", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.one:
        print(json.dumps(run_one(args.one[0], args.extractor, args.device, int(args.one[1]), int(args.one[2]))))
        return 0
    if not args.data.is_dir():
        print(f"bench_extract: {args.data} not found (give --data)", file=sys.stderr)
        return 2
    from m2e_plugin.audio import info

    clips = pick_clips(args.data, args.n)
    audio_s = sum(info(c).duration for c in clips)
    for c in clips:  # warm the page cache for every setting alike
        c.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        list_file = Path(tmp) / "clips.txt"
        list_file.write_text("".join(f"{c}\n" for c in clips))
        print(f"# {len(clips)} clips, {audio_s / 60:.1f} min of audio, extractor={args.extractor}, "
              f"device={args.device}, {os.cpu_count()} CPUs visible, load average before "
              f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}")
        print("| jobs | torch threads/worker | tracks | failed | wall s | tracks/min | audio min / wall min |")
        print("|---|---|---|---|---|---|---|")
        for threads in args.threads:
            for jobs in args.jobs:
                cmd = [sys.executable, __file__, "--one", str(list_file), str(jobs), str(threads),
                       "--extractor", args.extractor, "--device", args.device]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    return 1
                m = json.loads(proc.stdout.strip().splitlines()[-1])
                shown = m["torch_threads"]
                print(f"| {jobs} | {shown} | {m['done']} | {m['failed']} | {m['wall']:.1f} | "
                      f"{60 * m['done'] / m['wall']:.1f} | {audio_s / m['wall']:.1f} |", flush=True)
        print(f"# load average after {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
