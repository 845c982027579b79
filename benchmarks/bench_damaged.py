"""A long MP3 with damaged regions: what `m2e predict` keeps, where it says audio was lost, time and memory.

    python benchmarks/bench_damaged.py                          # 2 h MP3, 200 KB of random bytes at one third
    python benchmarks/bench_damaged.py --minutes 10 --regions 2 # 10 min, damage at one third and two thirds
    python benchmarks/bench_damaged.py --keep /tmp/long         # keep (and reuse) the encoded clean MP3

The clean MP3 is synthetic music (:func:`m2e_plugin.demo.synth_music`, 30 s looped) encoded by ffmpeg at 128 kb/s
CBR (16 000 bytes a second, so the true place and length of each damaged region follow from its byte offset and
size). Random bytes are written over the data at ``i/(regions+1)`` of the file. `m2e predict` runs in a fresh
process under a small wrapper that reports the largest resident memory of it and its children (ffmpeg, ffprobe).
The table compares each reported region with the truth; the load average is printed before and after (on a shared
machine the times are indicative only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BYTES_PER_SECOND = 128_000 // 8

# Runs the command given after it and prints the largest ru_maxrss (KiB) of its process tree on stderr's last line.
PEAK = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
        "print('peak_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)")


def cell(value) -> str:
    """A table cell: 2 decimals, or "-" for nothing."""
    return "-" if value is None else f"{value:.2f}"


def clean_mp3(folder: Path, minutes: float) -> Path:
    import numpy as np
    import soundfile as sf

    from m2e_plugin.demo import synth_music

    mp3 = folder / f"clean-{minutes:g}min.mp3"
    if mp3.exists():
        return mp3
    wav = folder / "loop.wav"
    y = synth_music(30.0, 44100, seed=3)
    sf.write(wav, np.stack([y, 0.7 * y], axis=1), 44100)
    loops = max(1, int(round(minutes * 2)))
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(wav),
                    "-b:a", "128k", str(mp3)], check=True)
    wav.unlink()
    return mp3


def damage(clean: Path, out: Path, regions: int, size: int) -> list[tuple[float, float]]:
    """Write ``size`` random bytes at i/(regions+1) of the file; return the truth as (start s, seconds) pairs."""
    import numpy as np

    data = bytearray(clean.read_bytes())
    truth = []
    garbage = np.random.default_rng(0).bytes(size)
    for i in range(1, regions + 1):
        at = len(data) * i // (regions + 1)
        data[at : at + size] = garbage
        truth.append((at / BYTES_PER_SECOND, size / BYTES_PER_SECOND))
    out.write_bytes(bytes(data))
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=120.0, help="length of the MP3 (default 120)")
    parser.add_argument("--regions", type=int, default=1, help="damaged regions (default 1)")
    parser.add_argument("--kb", type=int, default=200, help="random bytes per region, in KB (default 200)")
    parser.add_argument("--keep", default=None, help="folder for the MP3s (kept and reused; default a temporary one)")
    args = parser.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="m2e-damaged-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()}")
    started = time.perf_counter()
    clean = clean_mp3(folder, args.minutes)
    print(f"clean MP3: {clean} ({clean.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.0f} s to make)")
    damaged = folder / f"damaged-{args.minutes:g}min-{args.regions}x{args.kb}KB.mp3"
    truth = damage(clean, damaged, args.regions, args.kb * 1000)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "m2e_plugin", "predict", str(damaged),
                          "--progress", "never"], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    peak_gb = int(run.stderr.strip().splitlines()[-1].split()[1]) / 2**20
    if run.returncode != 0:
        sys.exit(f"m2e predict failed ({run.returncode}): {run.stderr[-2000:]}")
    result = json.loads(run.stdout)
    print(f"\n`m2e predict` on {args.minutes:g} min with {args.regions} x {args.kb} KB of random bytes: "
          f"wall {wall:.1f} s, peak RSS {peak_gb:.2f} GB, predicted over {result['duration']:.1f} s of "
          f"{args.minutes * 60:.0f} s; valence {result['valence']:.2f}, arousal {result['arousal']:.2f}\n")
    reported = [w for w in result["warnings"] if w["code"] in ("damaged", "truncated")]
    print("| region | true start (s) | reported start (s) | true loss (s) | reported loss (s) |")
    print("|---|---|---|---|---|")
    for i in range(max(len(truth), len(reported))):
        t = truth[i] if i < len(truth) else (None, None)
        r = reported[i] if i < len(reported) else {"start": None, "seconds_lost": None, "code": "-"}
        print(f"| {i + 1} ({r['code']}) | {cell(t[0])} | {cell(r['start'])} | {cell(t[1])} | "
              f"{cell(r['seconds_lost'])} |")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
