"""Robustness and rating behaviour of `lite` on 4Q clips its head never saw: level, codec, short excerpts.

    nice python benchmarks/robustness_lite.py [--n 40] [--excerpts 3]

Needs ../shared/data/4q-dev and the lite feature cache (``m2e features --model lite --dataset fourq ...``). So that
the clips are unseen, a head is trained with the shipped config on every clip outside the test clips' CV fold
(artist-grouped, as the cross-validation); the test clips are the first ``n`` of fold 0, balanced by quadrant.
Each clip goes through the product path (``Music2emo("lite").predict``) as decoded, at -6 dB and -20 dB (16-bit
quantised after the gain, as a quiet file would be), after an AAC 128k round trip (ffmpeg), and as ``excerpts``
random 1 s excerpts. Prints quadrant retention, median/max |dV|, |dA|, accuracy, extremeness of excerpts against
whole clips, valence/arousal percentiles, the antonym-pair rate of predicted moods and the agreement of
valence/arousal with the moods (Music2Emo's tag -> V/A table, when ../shared/data/music2emo-meta is present).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from paths import shared_data  # benchmarks/paths.py

SHARED = shared_data()


def _holdout_head(tmp: str, n: int):
    from m2e_plugin.backends.lite import default_weights
    from m2e_plugin.models.lite import save_lite
    from m2e_plugin.training.features import default_cache_root
    from m2e_plugin.training.lite import FourQFeatures, fit_head, load_config, member_configs, stratified_group_folds

    config = load_config()
    data = FourQFeatures.load(SHARED / "4q-dev", default_cache_root() / "features" / "lite" / "fourq",
                              kinds=list(member_configs(config)))
    fold = stratified_group_folds(data.y, data.groups, int(config["folds"]), int(config["seed"]))[0]
    per_q = n // 4
    test = np.concatenate([fold[data.y[fold] == q][:per_q] for q in range(4)])
    train = np.setdiff1d(np.arange(len(data.y)), fold)
    shipped = json.loads(default_weights().with_suffix(".json").read_text())
    model, _ = fit_head(config, data, train, epochs=shipped["training"]["final_epochs"])
    path = Path(tmp) / "holdout.safetensors"
    save_lite(model, path, {**shipped, "training": {**shipped["training"], "holdout_of": "fold 0"}})
    return path, [data.track_ids[i] for i in test], data.y[test]


def _mood_table():
    path = SHARED / "music2emo-meta" / "moodtag_va_scores.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        return {r["MoodTag"]: (float(r["Valence"]), float(r["Arousal"])) for r in csv.DictReader(fh)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="test clips (balanced by quadrant)")
    ap.add_argument("--excerpts", type=int, default=3, help="random 1 s excerpts per clip")
    args = ap.parse_args()
    if not (SHARED / "4q-dev").is_dir():
        print(f"robustness_lite: {SHARED / '4q-dev'} not found", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    from m2e_plugin.audio import load_audio
    from m2e_plugin.labels import ANTONYM_PAIRS
    from m2e_plugin.labels import MOOD_TAGS
    from m2e_plugin.predictor import Music2emo
    from m2e_plugin.training.lite_features import codec_round_trip

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        weights, ids, y = _holdout_head(tmp, args.n)
        model = Music2emo("lite", device="cpu", weights=weights)
        sr = model.backend.sample_rate
        rows = []
        for k, tid in enumerate(ids):
            path = SHARED / "4q-dev" / f"Q{y[k] + 1}" / f"{tid}.mp3"
            audio, _ = load_audio(path, target_sr=sr)
            views = {"clip": audio}
            for db in (-6, -20):
                views[f"{db} dB"] = np.round(audio * 10 ** (db / 20) * 32767).astype(np.float32) / 32767
            views["AAC 128k"] = codec_round_trip(str(path), "aac", sr)
            out = {name: model.predict((x, sr)) for name, x in views.items()}
            starts = rng.integers(0, audio.size - sr, args.excerpts)
            out["excerpts"] = [model.predict((audio[s: s + sr], sr)) for s in starts]
            rows.append(out)
            print(f"\r{k + 1}/{len(ids)}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    names = ["Q1", "Q2", "Q3", "Q4"]
    truth = [names[q] for q in y]
    clip = [r["clip"] for r in rows]
    print(f"{len(rows)} unseen 4Q clips (fold 0 of the CV, head trained on the other folds); load average "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| condition | quadrant kept | accuracy | median abs dV | median abs dA | max abs dV | max abs dA |")
    print("|---|---|---|---|---|---|---|")
    acc = np.mean([o["quadrant"] == t for o, t in zip(clip, truth)])
    print(f"| as decoded | - | {acc:.3f} | - | - | - | - |")
    for name in ("-6 dB", "-20 dB", "AAC 128k"):
        other = [r[name] for r in rows]
        kept = np.mean([a["quadrant"] == b["quadrant"] for a, b in zip(clip, other)])
        dv = np.abs([a["valence"] - b["valence"] for a, b in zip(clip, other)])
        da = np.abs([a["arousal"] - b["arousal"] for a, b in zip(clip, other)])
        acc = np.mean([o["quadrant"] == t for o, t in zip(other, truth)])
        print(f"| {name} | {kept:.3f} | {acc:.3f} | {np.median(dv):.3f} | {np.median(da):.3f} | {dv.max():.3f} | "
              f"{da.max():.3f} |")
    whole = np.array([[abs(o["valence"] - 5), abs(o["arousal"] - 5)] for o in clip])
    short = np.array([[abs(o["valence"] - 5), abs(o["arousal"] - 5)] for r in rows for o in r["excerpts"]])
    print(f"\nextremeness |V-5|, |A-5| (mean / p95): whole clips {whole[:, 0].mean():.2f}/{np.percentile(whole[:, 0], 95):.2f},"
          f" {whole[:, 1].mean():.2f}/{np.percentile(whole[:, 1], 95):.2f}; 1 s excerpts "
          f"{short[:, 0].mean():.2f}/{np.percentile(short[:, 0], 95):.2f}, {short[:, 1].mean():.2f}/"
          f"{np.percentile(short[:, 1], 95):.2f}")
    v = np.array([o["valence"] for o in clip])
    a = np.array([o["arousal"] for o in clip])
    for name, x in (("valence", v), ("arousal", a)):
        print(f"{name}: p5 {np.percentile(x, 5):.2f}, p50 {np.median(x):.2f}, p95 {np.percentile(x, 95):.2f}, "
              f"outside [1.5, 8.5] {np.mean((x < 1.5) | (x > 8.5)):.3f}")
    for name, outputs in (("whole clip", clip), ("1 s excerpt", [o for r in rows for o in r["excerpts"]])):
        moods = [set(o["predicted_moods"]) for o in outputs]
        antonym = np.mean([any(p <= m for p in map(set, ANTONYM_PAIRS)) for m in moods])
        counts = [len(m) for m in moods]
        print(f"predicted moods per {name}: median {np.median(counts):.0f}, mean {np.mean(counts):.2f}, none "
              f"{np.mean(np.equal(counts, 0)):.3f}; with an antonym pair {antonym:.3f}")
    table = _mood_table()
    if table:
        probs = np.array([[o["mood_probabilities"][t] for t in MOOD_TAGS] for o in clip])
        tv = np.array([table[t] for t in MOOD_TAGS])
        implied = probs @ tv / np.maximum(probs.sum(1, keepdims=True), 1e-9)
        print(f"agreement with the moods (Music2Emo tag->V/A table, probability-weighted): Pearson r valence "
              f"{np.corrcoef(v, implied[:, 0])[0, 1]:.2f}, arousal {np.corrcoef(a, implied[:, 1])[0, 1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
