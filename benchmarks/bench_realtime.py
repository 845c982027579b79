"""Realtime sidecar latency and CPU load: end of window -> OSC bundle sent, per model, device and hop.

    nice python benchmarks/bench_realtime.py                               # lite + music2emo on CPU, hops 0.5 and 1
    python benchmarks/bench_realtime.py --models lite --seconds 60
    python benchmarks/bench_realtime.py --models music2emo --devices cuda --batches 1,4 --hops 0.25,0.5  # GPU

``--batches``: windows analysed together when the model is busy (``m2e stream --batch``; 4 by default on a GPU).
The inference column is per window (a batched call's time divided by its windows).

Each case runs in a fresh subprocess: a synthetic 44.1 kHz stereo WAV is replayed **paced in real time** (exactly
like a live input) into the full sidecar (ring buffer, scheduler, model worker, smoothing, OSC to a local UDP
receiver at 30 Hz). Latency is measured from the monotonic time at which the window's last frame entered the ring
buffer to the moment the bundle carrying that window's result left the socket. CPU load is the process CPU time
over wall time (100 % = one core busy), averaged over the run, start-up excluded.

``music2emo`` uses the full-size MERT-v1-95M architecture, the published head layout and the full-size BTC network
with RANDOM weights (the hub is not reachable here; timing does not depend on weight values). ``lite`` is the
embedded model with its shipped weights.
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

HERE = Path(__file__).resolve().parent


def write_audio(path: Path, seconds: float) -> None:
    import numpy as np
    import soundfile as sf

    from m2e_plugin.demo import synth_music

    y = synth_music(seconds, 44100)
    sf.write(path, np.stack([y, 0.8 * y], axis=1), 44100, subtype="PCM_16")


def worker(args) -> None:
    from m2e_plugin.realtime.memory import steady_heap

    steady_heap()  # as `m2e stream` does, before any thread allocates
    import socket

    import torch

    from m2e_plugin.realtime.capture import FileSource
    from m2e_plugin.realtime.engine import ModelRunner
    from m2e_plugin.realtime.osc import parse_destination
    from m2e_plugin.realtime.sidecar import Sidecar

    if args.threads:
        torch.set_num_threads(args.threads)
    options = json.loads(args.options) if args.options else {}
    runner = ModelRunner(args.model, device=args.device, model_options=options)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a receiver, so sends really go somewhere
    sink.bind(("127.0.0.1", 0))
    sc = Sidecar(FileSource(args.audio, pace=True, loop=True), runner,
                 [parse_destination(f"127.0.0.1:{sink.getsockname()[1]}")], window=args.window, hop=args.hop,
                 rate=30.0, batch=args.batch)
    runner.warm_up(args.window)  # first calls allocate, pick kernels, load CUDA: not measured
    sc.start()
    t0, c0 = time.monotonic(), time.process_time()
    sc.wait(args.seconds)
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    sc.stop()
    sink.close()
    s = sc.summary()
    inference = runner.current.backend
    s.update(cpu_percent=round(100.0 * cpu / wall, 1), device=getattr(inference, "device", args.device),
             load_average=round(os.getloadavg()[0], 2))
    print(json.dumps(s))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="lite,music2emo")
    p.add_argument("--devices", default="cpu", help="comma list: cpu, cuda")
    p.add_argument("--hops", default="0.5,1.0")
    p.add_argument("--window", type=float, default=5.0, help="analysis window, s (default 5)")
    p.add_argument("--seconds", type=float, default=30.0, help="measured run per case, s (default 30)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--batches", default="1", help="comma list of --batch values (default 1)")
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--device", help=argparse.SUPPRESS)
    p.add_argument("--hop", type=float, help=argparse.SUPPRESS)
    p.add_argument("--audio", help=argparse.SUPPRESS)
    p.add_argument("--options", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        audio = tmp / "music.wav"
        write_audio(audio, 60.0)
        m2e_options = None
        for model in args.models.split(","):
            options = {}
            if model == "music2emo":
                if m2e_options is None:
                    sys.path.insert(0, str(HERE))
                    from bench_music2emo import build_weights

                    m2e_options = build_weights(tmp)
                options = m2e_options
            for device in args.devices.split(","):
                for hop, batch in ((float(h), int(b)) for h in args.hops.split(",") for b in args.batches.split(",")):
                    cmd = [sys.executable, __file__, "--worker", "--model", model, "--device", device, "--hop",
                           str(hop), "--window", str(args.window), "--seconds", str(args.seconds), "--audio",
                           str(audio), "--options", json.dumps(options), "--threads", str(args.threads),
                           "--batch", str(batch)]
                    print(f"running {model} on {device}, hop {hop} s, batch {batch} ...", file=sys.stderr, flush=True)
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 900)
                    if proc.returncode != 0:
                        print(proc.stderr[-2000:], file=sys.stderr)
                        rows.append((model, device, hop, batch, None))
                        continue
                    rows.append((model, device, hop, batch, json.loads(proc.stdout.strip().splitlines()[-1])))

    print(f"\nwindow {args.window:g} s, {args.seconds:g} s measured per case, OSC at 30 Hz, "
          f"{os.cpu_count()} CPU cores visible\n")
    print("| model | device | hop (s) | batch | updates | model calls | skipped windows | latency median (ms) "
          "| latency p95 (ms) | inference per window (ms) | CPU load (% of one core) | machine load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for model, device, hop, batch, s in rows:
        if s is None:
            print(f"| {model} | {device} | {hop:g} | {batch} | failed | | | | | | | |")
            continue
        print(f"| {model} | {s['device']} | {hop:g} | {batch} | {s['updates']} | {s['model_calls']} | "
              f"{s['skipped_windows']} | {s['latency_ms_median']} | {s['latency_ms_p95']} | {s['inference_ms_median']} "
              f"| {s['cpu_percent']} | {s['load_average']} |")


if __name__ == "__main__":
    main()
