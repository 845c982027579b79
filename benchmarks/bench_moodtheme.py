"""The mood/theme CNN (m2e_plugin.backbones.moodtheme): speed, short-window strategies, level and codec stability.
Prints markdown tables. One torch thread. Needs ../shared/data/4q-dev for everything but ``speed``.

    nice python benchmarks/bench_moodtheme.py speed [--repeat 10]
    nice python benchmarks/bench_moodtheme.py strategies [--clips 50]   # how short windows get their moods
    nice python benchmarks/bench_moodtheme.py stability [--clips 40]    # -6/-20 dB and AAC 128k round trip

``strategies`` compares, for 3 s and 10 s windows (two per clip), the shipped way (mel frames reflection-padded to
640 frames for 3 s, 1280 for 10 s; raw probabilities, before the per-length calibration) with a max over the window alone
(every time pooling in ceil mode) and three ways of making a window look like a 29.1 s training crop: tiling its
mel frames, reflection-padding them to 1366, looping its audio. Agreement with the whole clip (its centred
29.1 s): Pearson r of the 56 raw probabilities, the top tag's rank, top-5 overlap; and milliseconds per window.
Report the machine load (``uptime``) with the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from m2e_plugin.backbones.level import normalise_level
from m2e_plugin.backbones.moodtheme import HOP, INPUT_FRAMES, SR, MoodTagger, _network_inputs, log_mel, raw_logits
from m2e_plugin.labels import MOOD_TAGS

FOURQ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "4q-dev"


def _clips(n: int) -> list[Path]:
    files = sorted(FOURQ.glob("Q*/*.mp3"))
    if not files:
        raise SystemExit(f"needs the 4Q clips in {FOURQ}")
    return files[:: max(1, len(files) // n)][:n]


def speed(repeat: int) -> None:
    from m2e_plugin.demo import synth_music

    tagger = MoodTagger.load()
    y = synth_music(30.0, SR).astype(np.float32)
    rows = []
    for label, audio in (("30 s clip", y), ("10 s window", y[: 10 * SR]), ("3 s window", y[: 3 * SR])):
        tagger.predict_moods(audio, SR)  # warm-up
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            tagger.predict_moods(audio, SR)
            times.append(time.perf_counter() - t)
        mel_t = time.perf_counter()
        log_mel(audio)
        mel_ms = 1000 * (time.perf_counter() - mel_t)
        rows.append(f"| {label} | {1000 * np.median(times):.1f} | {1000 * np.percentile(times, 95):.1f} | {mel_ms:.1f} |")
    print("| input (12 kHz) | median ms | p95 ms | of which mel ms |\n|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nload average: {os.getloadavg()}")


def _window_mel(window: np.ndarray, strategy: str) -> np.ndarray:
    if strategy == "loop audio":
        need = INPUT_FRAMES * HOP
        return log_mel(np.tile(window, -(-need // len(window)))[: need - HOP + 1])[:, :INPUT_FRAMES]
    mel = log_mel(window)
    if strategy == "tile mel frames":
        return np.tile(mel, (1, -(-INPUT_FRAMES // mel.shape[1])))[:, :INPUT_FRAMES]
    if strategy == "reflect-pad mel to 1366":
        return np.pad(mel, ((0, 0), (0, INPUT_FRAMES - mel.shape[1])), mode="reflect")
    if strategy == "max over the window alone":
        return mel  # the network's time pooling in ceil mode over the window itself
    return _network_inputs(mel)[0]  # shipped: reflection-padded to 640 (<= 6.8 s) or 1280 frames


@torch.inference_mode()
def strategies(n_clips: int) -> None:
    from m2e_plugin.audio import load_audio

    network = MoodTagger.load().network
    names = ["shipped: reflect-pad to 640 (3 s) / 1280 (10 s)", "max over the window alone", "tile mel frames",
             "reflect-pad mel to 1366", "loop audio"]
    stats = {(s, L): {"r": [], "rank": [], "top5": [], "ms": []} for s in names for L in (3, 10)}
    for path in _clips(n_clips):
        y = normalise_level(load_audio(path, target_sr=SR)[0], SR).audio
        full = 1 / (1 + np.exp(-raw_logits(network, [y])[0]))
        top5 = set(np.argsort(-full)[:5])
        for L in (3, 10):
            n = L * SR
            starts = [0, max(0, len(y) // 2 - n // 2)]
            for s in names:
                for st in starts:
                    w = normalise_level(y[st : st + n], SR).audio
                    t = time.perf_counter()
                    p = torch.sigmoid(network(torch.from_numpy(_window_mel(w, s)[None]))).double().numpy()[0]
                    stats[s, L]["ms"].append(1000 * (time.perf_counter() - t))
                    stats[s, L]["r"].append(np.corrcoef(p, full)[0, 1])
                    stats[s, L]["rank"].append(int(np.sum(full > full[p.argmax()])) + 1)
                    stats[s, L]["top5"].append(len(top5 & set(np.argsort(-p)[:5])) / 5)
    print(f"{n_clips} 4Q clips, 2 windows each (start, middle); reference: the clip's centred 29.1 s\n")
    print("| window | strategy | median r (56 probs) | window top tag's median rank in clip | top-5 overlap | ms/window |")
    print("|---|---|---|---|---|---|")
    for (s, L), v in stats.items():
        print(f"| {L} s | {s} | {np.median(v['r']):.3f} | {np.median(v['rank']):.0f} | {np.mean(v['top5']):.3f} "
              f"| {np.median(v['ms']):.0f} |")
    print(f"\nload average: {os.getloadavg()}")


def _aac_round_trip(path: Path, tmp: str) -> np.ndarray:
    from m2e_plugin.audio import load_audio

    out = os.path.join(tmp, "rt.m4a")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(path), "-c:a", "aac", "-b:a", "128k", out],
                   check=True)
    return load_audio(out, target_sr=SR)[0]


def stability(n_clips: int) -> None:
    from m2e_plugin.audio import load_audio

    if not shutil.which("ffmpeg"):
        raise SystemExit("stability needs ffmpeg for the AAC round trip")
    tagger = MoodTagger.load()
    rows = {name: {"maxdiff": [], "r": [], "same_set": [], "jaccard": []}
            for name in ("-6 dB", "-20 dB", "AAC 128k", "-20 dB, no level normalisation")}
    with tempfile.TemporaryDirectory() as tmp:
        for path in _clips(n_clips):
            y = load_audio(path, target_sr=SR)[0]
            ref = tagger.predict_moods(y, SR)
            variants = {"-6 dB": tagger.predict_moods(y * 10 ** (-6 / 20), SR),
                        "-20 dB": tagger.predict_moods(y * 10 ** (-20 / 20), SR),
                        "AAC 128k": tagger.predict_moods(_aac_round_trip(path, tmp), SR)}
            # what the level normalisation buys: the network on the raw signal at 0 and -20 dB, same calibration
            raw = [raw_logits(tagger.network, [g * normalise_level(y, SR).audio]) for g in (1.0, 0.1)]
            base = 1 / (1 + np.exp(-(raw[0][0] - tagger.logit_thresholds)))
            variants["-20 dB, no level normalisation"] = 1 / (1 + np.exp(-(raw[1][0] - tagger.logit_thresholds)))
            for name, p in variants.items():
                r0 = base if name.startswith("-20 dB, no") else ref
                rows[name]["maxdiff"].append(np.abs(p - r0).max())
                rows[name]["r"].append(np.corrcoef(p, r0)[0, 1])
                a, b = set(np.flatnonzero(p > 0.5)), set(np.flatnonzero(r0 > 0.5))
                rows[name]["same_set"].append(a == b)
                rows[name]["jaccard"].append(len(a & b) / len(a | b) if a | b else 1.0)
    print(f"{n_clips} 4Q clips, whole clip (calibrated probabilities, {len(MOOD_TAGS)} tags)\n")
    print("| change | median max abs diff | median r | same predicted set | mean Jaccard |\n|---|---|---|---|---|")
    for name, v in rows.items():
        print(f"| {name} | {np.median(v['maxdiff']):.2g} | {np.median(v['r']):.4f} | {np.mean(v['same_set']):.3f} "
              f"| {np.mean(v['jaccard']):.3f} |")
    print(f"\nload average: {os.getloadavg()}")


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("speed", help="ms per 30 s clip, 10 s and 3 s window").add_argument("--repeat", type=int, default=10)
    sub.add_parser("strategies", help="short-window strategies vs whole clip").add_argument("--clips", type=int, default=50)
    sub.add_parser("stability", help="level and AAC stability").add_argument("--clips", type=int, default=40)
    args = parser.parse_args()
    if args.what == "speed":
        speed(args.repeat)
    elif args.what == "strategies":
        strategies(args.clips)
    else:
        stability(args.clips)


if __name__ == "__main__":
    main()
