"""Soak test of the realtime sidecar: hours of audio through the full pipeline, memory must stay flat.

    nice python benchmarks/soak_realtime.py                      # one hour of audio, lite, hop 0.5 s
    python benchmarks/soak_realtime.py --audio-seconds 600       # shortened run
    python benchmarks/soak_realtime.py --audio-seconds 600 --pace  # paced like a live input (skipping path)

A 60 s synthetic WAV is looped (``FileSource(loop=True, pace=False)``: as fast as the model allows, with
back-pressure, so every window is analysed) into the full sidecar with OSC going to a local UDP receiver at the
normal 30 Hz cadence and the monitor page server running. Resident memory (VmRSS) is sampled every
``--every`` seconds of audio; the table shows it with the counters. "Flat" = the growth from the first sample
after warm-up (10 % of the run) to the end stays within a few MB, independent of the run's length.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; peak RSS from getrusage elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lite")
    p.add_argument("--device", default="cpu")
    p.add_argument("--audio-seconds", type=float, default=3600.0)
    p.add_argument("--window", type=float, default=5.0)
    p.add_argument("--hop", type=float, default=0.5)
    p.add_argument("--every", type=float, default=None, help="sample memory every N s of audio (default run/12)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--pace", action="store_true", help="replay in real time, like a live input")
    args = p.parse_args()

    from m2e_plugin.realtime.memory import steady_heap

    steady_heap()  # as `m2e stream` does, before any thread allocates
    import numpy as np
    import soundfile as sf
    import torch

    from m2e_plugin.demo import synth_music
    from m2e_plugin.realtime.capture import FileSource
    from m2e_plugin.realtime.engine import ModelRunner
    from m2e_plugin.realtime.osc import parse_destination
    from m2e_plugin.realtime.monitor import MonitorServer
    from m2e_plugin.realtime.sidecar import Sidecar

    torch.set_num_threads(args.threads)
    every = args.every or args.audio_seconds / 12
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "music.wav"
        y = synth_music(60.0, 44100)
        sf.write(audio, np.stack([y, 0.8 * y], axis=1), 44100, subtype="PCM_16")
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        source = FileSource(audio, pace=args.pace, loop=True, max_seconds=args.audio_seconds)
        sc = Sidecar(source, ModelRunner(args.model, device=args.device),
                     [parse_destination(f"127.0.0.1:{sink.getsockname()[1]}")], window=args.window, hop=args.hop,
                     rate=30.0, monitor=MonitorServer(0))
        rows = []
        sc.start()
        t0 = time.monotonic()
        next_mark = 0.0
        while not sc.engine.done.is_set():
            audio_s = source.ring.written / source.sample_rate
            if audio_s >= next_mark:
                rows.append((audio_s, time.monotonic() - t0, rss_mb(), sc.engine.updates, sc.engine.skipped,
                             sc.output.sent))
                print(f"  {audio_s:8.0f} s audio  {rows[-1][1]:7.1f} s wall  RSS {rows[-1][2]:7.1f} MB",
                      file=sys.stderr, flush=True)
                next_mark += every
            try:  # drain the receiver so its socket buffer does not grow either
                while True:
                    sink.recv(65536)
            except BlockingIOError:
                pass
            time.sleep(0.05)
        sc.wait(5)
        sc.stop()
        rows.append((source.ring.written / source.sample_rate, time.monotonic() - t0, rss_mb(), sc.engine.updates,
                     sc.engine.skipped, sc.output.sent))
        sink.close()
    s = sc.summary()
    print(f"\n{args.model} on {args.device}, window {args.window:g} s, hop {args.hop:g} s, "
          f"{args.audio_seconds:g} s of audio {'paced in real time' if args.pace else 'without pacing'}\n")
    print("| audio (s) | wall (s) | RSS (MB) | updates | skipped | bundles sent |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]:.0f} | {r[1]:.1f} | {r[2]:.1f} | {r[3]} | {r[4]} | {r[5]} |")
    warm = next((r for r in rows if r[0] >= 0.1 * args.audio_seconds), rows[0])
    print(f"\nRSS growth after warm-up ({warm[0]:.0f} s -> end): {rows[-1][2] - warm[2]:+.1f} MB; "
          f"updates {s['updates']}, skipped {s['skipped_windows']}, model errors {s['model_errors']}, "
          f"speed {rows[-1][0] / rows[-1][1]:.1f}x real time")


if __name__ == "__main__":
    main()
