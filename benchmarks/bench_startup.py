"""Start-up time and memory of `m2e predict` on one short clip, and where they go.

    python benchmarks/bench_startup.py                 # a 30 s 4Q clip from ../shared/data, else a synthetic one
    python benchmarks/bench_startup.py --clip song.mp3 --repeat 5

Each row runs a fresh process ``--repeat`` times and reports the median and best wall time and the peak resident
memory (the child's ru_maxrss). The phase table runs the CLI once in an instrumented process: import torch, the
rest of the imports and the model load, the prediction, and the memory at the end split into anonymous memory
(heap, tensors) and file-backed pages (shared libraries: torch's CUDA build maps ~0.45 GB libtorch_cpu and
libtorch_cuda each). The machine's load average is printed before and after: on a shared machine the figures are
indicative only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from paths import shared_data  # benchmarks/paths.py

HERE = Path(__file__).resolve().parent
M2E = [sys.executable, "-m", "m2e_plugin"]

PHASES = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from m2e_plugin.predictor import Music2emo
model = Music2emo("lite", device="cpu")
t2 = time.perf_counter()
model.predict(sys.argv[1])
t3 = time.perf_counter()
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
kb = lambda k: int(status.get(k, "0 kB").split()[0])
print(json.dumps({"import torch": t1 - t0, "other imports + model load": t2 - t1, "predict (decode + model)": t3 - t2,
                  "rss_anon_mb": kb("RssAnon") / 1024, "rss_file_mb": kb("RssFile") / 1024}))
"""


def _run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run of ``cmd``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def _clip(arg: str | None, tmp: Path) -> str:
    if arg:
        return arg
    shared = shared_data()
    found = sorted((shared / "4q-dev").glob("Q*/*.mp3"))
    if found:
        return str(found[0])
    import soundfile as sf

    from m2e_plugin.demo import synth_music

    path = tmp / "clip30s.wav"
    sf.write(path, synth_music(30.0, 44100), 44100)
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=None, help="audio file (default: a 30 s 4Q clip, else a synthetic one)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row (default 3)")
    args = ap.parse_args()
    env_note = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    with tempfile.TemporaryDirectory() as tmp:
        clip = _clip(args.clip, Path(tmp))
        load_before = os.getloadavg()
        rows = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("python -c 'import numpy'", [sys.executable, "-c", "import numpy"]),
            ("python -c 'import torch'", [sys.executable, "-c", "import torch"]),
            ("m2e --help", [*M2E, "--help"]),
            (f"m2e predict {Path(clip).name}", [*M2E, "predict", clip]),
        ]
        print(f"clip: {clip}; {args.repeat} runs per row; {env_note}; load average before: "
              + " ".join(f"{x:.2f}" for x in load_before))
        print(f"| {'command':<36} | median wall s | best wall s | peak RSS MB |")
        print(f"|{'-' * 38}|---------------|-------------|-------------|")
        for label, cmd in rows:
            runs = [_run(cmd) for _ in range(args.repeat)]
            walls = [w for w, _ in runs]
            print(f"| {label:<36} | {statistics.median(walls):13.2f} | {min(walls):11.2f} | "
                  f"{max(r for _, r in runs):11.0f} |")
        out = subprocess.run([sys.executable, "-c", PHASES, clip], capture_output=True, text=True, check=True)
        import json

        phases = json.loads(out.stdout.strip().splitlines()[-1])
        print()
        print("| phase (one instrumented run, in-process) | seconds |")
        print("|---|---|")
        for key in ("import torch", "other imports + model load", "predict (decode + model)"):
            print(f"| {key} | {phases[key]:.2f} |")
        print(f"| memory at the end: anonymous / file-backed (libraries) | {phases['rss_anon_mb']:.0f} MB / "
              f"{phases['rss_file_mb']:.0f} MB |")
        print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
