"""Speed of the `lite` model on this machine: a 30 s clip, decode included. Prints a markdown table.

    python benchmarks/bench_lite.py [AUDIO_FILE] [--repeat 20] [--threads 1]

Without AUDIO_FILE it uses a 30 s 4Q clip from ../shared/data when present, else a synthetic 30 s 44.1 kHz WAV.
Target: a 30 s clip in < 0.3 s end to end (>= 100x real time) on one CPU core.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path



def _default_clip(tmp: str) -> str:
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "4q-dev"
    clips = sorted(shared.glob("Q*/*.mp3")) if shared.is_dir() else []
    if clips:
        return str(clips[0])
    import soundfile as sf

    from m2e_plugin.demo import synth_music

    path = os.path.join(tmp, "synthetic_30s.wav")
    sf.write(path, synth_music(30.0, 44100), 44100)
    return path


def _time(fn, repeat: int) -> list[float]:
    fn()  # warm-up (imports, filter banks)
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("audio", nargs="?", default=None)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from m2e_plugin.audio import info, load_audio
    from m2e_plugin.backbones.lite import SAMPLE_RATE, clip_features
    from m2e_plugin.backends.lite import default_weights
    from m2e_plugin.predictor import Music2emo

    with tempfile.TemporaryDirectory() as tmp:
        path = args.audio or _default_clip(tmp)
        duration = info(path).duration
        t = time.perf_counter()
        model = Music2emo("lite", device="cpu")
        load_s = time.perf_counter() - t
        audio, _ = load_audio(path, target_sr=SAMPLE_RATE)
        feats = clip_features(audio)
        rows = [
            ("decode + resample to 22.05 kHz", _time(lambda: load_audio(path, target_sr=SAMPLE_RATE), args.repeat)),
            ("descriptors (clip_features)", _time(lambda: clip_features(audio), args.repeat)),
            ("head (MLP/logistic)", _time(lambda: model.backend._score(feats), args.repeat)),
            ("end to end: Music2emo().predict(file)", _time(lambda: model.predict(path), args.repeat)),
        ]
    weights = default_weights()
    print(f"clip: {path} ({duration:.1f} s), torch threads: {args.threads}, repeats: {args.repeat}")
    print(f"model load: {load_s * 1000:.0f} ms; weights {weights.stat().st_size / 1024:.1f} KiB "
          f"+ card {weights.with_suffix('.json').stat().st_size / 1024:.1f} KiB; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print()
    print("| stage | median ms | min ms | x real time (median) |")
    print("|---|---|---|---|")
    for name, ts in rows:
        med = statistics.median(ts)
        print(f"| {name} | {med * 1000:.1f} | {min(ts) * 1000:.1f} | {duration / med:.0f} |")
    total = statistics.median(rows[-1][1])
    verdict = "meets" if total < 0.3 else "MISSES"
    print(f"\nend to end {total * 1000:.0f} ms for {duration:.1f} s: {verdict} the < 300 ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
