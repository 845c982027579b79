"""Speed of the `lite` model (v2) on this machine, one torch thread: a 30 s MP3 end to end (decode included) and the
realtime case, one 3 s window. Prints a markdown table.

    nice python benchmarks/bench_lite.py [AUDIO_FILE] [--repeat 10] [--windows 50]

Without AUDIO_FILE it uses a 30 s 4Q MP3 from ../shared/data when present, else a synthetic 30 s MP3 made with
ffmpeg. Targets (issue 11): >= 30x real time end to end; per-3 s-window inference p95 <= 150 ms.
Report the machine load (``uptime``) with the figures: a busy shared CPU slows every stage.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from paths import shared_data  # benchmarks/paths.py


def _default_clip(tmp: str) -> str:
    shared = shared_data() / "4q-dev"
    clips = sorted(shared.glob("Q*/*.mp3")) if shared.is_dir() else []
    if clips:
        return str(clips[0])
    import soundfile as sf

    from m2e_plugin.demo import synth_music

    wav, mp3 = os.path.join(tmp, "synthetic_30s.wav"), os.path.join(tmp, "synthetic_30s.mp3")
    sf.write(wav, synth_music(30.0, 44100), 44100)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", wav, "-b:a", "192k", "-y", mp3], check=True)
    return mp3


def _time(fn, repeat: int) -> list[float]:
    fn()  # warm-up (imports, filter banks, first allocation)
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("audio", nargs="?", default=None)
    ap.add_argument("--repeat", type=int, default=10, help="end-to-end repetitions")
    ap.add_argument("--windows", type=int, default=50, help="3 s windows timed for the realtime figure")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from m2e_plugin.audio import info, load_audio
    from m2e_plugin.backbones.musicnn import SAMPLE_RATE, embed_audio
    from m2e_plugin.predictor import Music2emo

    with tempfile.TemporaryDirectory() as tmp:
        path = args.audio or _default_clip(tmp)
        duration = info(path).duration
        t = time.perf_counter()
        model = Music2emo("lite", device="cpu")
        load_s = time.perf_counter() - t
        backend = model.backend
        audio, _ = load_audio(path, target_sr=SAMPLE_RATE)
        block = audio[: 30 * SAMPLE_RATE]
        rows = [
            ("decode + resample to 16 kHz", _time(lambda: load_audio(path, target_sr=SAMPLE_RATE), args.repeat)),
            ("musicnn MSD, 5 patches (level norm + mel + network)",
             _time(lambda: embed_audio(backend._musicnn, block, patch_step=2), args.repeat)),
            *([("musicnn MSD + MTT, 5 patches (what the head reads)",
                _time(lambda: embed_audio(backend._musicnn, block, patch_step=2, pooled_by=backend._mtt),
                      args.repeat))] if backend._mtt is not None else []),
            ("mood CNN (56 tags)", _time(lambda: backend._moods.predict_moods(block, SAMPLE_RATE), args.repeat)),
            ("end to end: Music2emo().predict(file)", _time(lambda: model.predict(path), args.repeat)),
        ]
        rng = np.random.default_rng(0)
        starts = rng.integers(0, max(1, audio.size - 3 * SAMPLE_RATE), args.windows)
        windows = [audio[s: s + 3 * SAMPLE_RATE] for s in starts]
        backend.predict_window(windows[0])
        window_times = []
        for w in windows:
            t = time.perf_counter()
            backend.predict_window(w)
            window_times.append(time.perf_counter() - t)
    print(f"clip: {path} ({duration:.1f} s), torch threads: 1, repeats: {args.repeat}, load average "
          f"{os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs")
    print(f"model load: {load_s * 1000:.0f} ms; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          f" MiB")
    print()
    print("| stage | median ms | min ms | x real time (median) |")
    print("|---|---|---|---|")
    for name, ts in rows:
        med = statistics.median(ts)
        print(f"| {name} | {med * 1000:.1f} | {min(ts) * 1000:.1f} | {duration / med:.0f} |")
    w = np.asarray(window_times) * 1000
    print(f"| one 3 s window (predict_window), n={len(w)} | {np.median(w):.1f} | {w.min():.1f} | "
          f"p95 {np.percentile(w, 95):.1f} ms |")
    total = statistics.median(rows[-1][1])
    rtf = duration / total
    print(f"\nend to end {total * 1000:.0f} ms for {duration:.1f} s = {rtf:.0f}x real time: "
          f"{'meets' if rtf >= 30 else 'MISSES'} the >= 30x target; 3 s window p95 {np.percentile(w, 95):.0f} ms: "
          f"{'meets' if np.percentile(w, 95) <= 150 else 'MISSES'} the <= 150 ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
