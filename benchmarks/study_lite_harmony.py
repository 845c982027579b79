"""Do the package's own chord and key estimates lift `lite`'s quadrant accuracy? A study on the 600 shared 4Q clips
(issue 11). Music2Emo feeds chord and key tokens beside MERT; lite's head reads only musicnn. Here the offline
harmony front end (:mod:`m2e_plugin.harmony`: basic-pitch note posteriors -> key scores, the template chord
recogniser) describes each clip with 47 numbers, and the product's folds say whether they add to musicnn.

    python benchmarks/study_lite_harmony.py extract --data-home ../shared/data/4q-dev -j 2   # ~10 min on 2 cores
    python benchmarks/study_lite_harmony.py cv --data-home ../shared/data/4q-dev             # ~3 min

``extract`` stores per clip (``~/.cache/m2e/features/lite-harmony/fourq/<id>.json``, resumable) the key scores of
:func:`m2e_plugin.harmony.key.key_scores` (2 x 12: major, minor x tonic), the key, the chord segments of
:func:`m2e_plugin.harmony.recognize_chords` and the clip's mean note salience (72 semitones, C1..B6).
:func:`harmony_features` turns one record into the 47 features: best major and best minor key score, their
difference, minor key (0/1) and key confidence; shares of time in major-family, minor-family, no-chord and seventh
chords, chord changes per second, distinct chords; the pitch-class profile rotated to the key's relative-major
tonic (12); the time share of each chord root relative to that tonic, per family (24).

``cv``: the product's folds (:func:`m2e_plugin.training.lite.cv_splits`, fold seeds 0 / 1 / 2), lite 2.1's two
features from the lite training cache (``m2e features --model lite``), standardised (clipped to +-8), multinomial
logistic regressions with fixed C on the even and odd patch views, scored on the even view; ``+`` = concatenated,
``&`` = log-probabilities averaged (the study_lite_features.py conventions; its lite 2.1 row reproduces 0.746).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from paths import cache_dir  # benchmarks/paths.py

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling study's table format
DEFAULT_OUT = cache_dir("features", "lite-harmony", "fourq")
# name -> [(feature kinds, C), ...]: one member = one regression on the concatenated kinds; several = an ensemble
CONFIGS = {
    "harmony alone (C 0.03)": [(("harmony",), 0.03)],
    "harmony alone (C 0.3)": [(("harmony",), 0.3)],
    "MSD penultimate & MTT pooled (lite 2.1)": [(("msd_penultimate",), 0.03), (("mtt_pooled",), 0.003)],
    "MSD penultimate + harmony & MTT pooled": [(("msd_penultimate", "harmony"), 0.03), (("mtt_pooled",), 0.003)],
    "MSD penultimate + harmony (C 0.02) & MTT pooled": [(("msd_penultimate", "harmony"), 0.02),
                                                         (("mtt_pooled",), 0.003)],
    "MSD penultimate & MTT pooled & harmony (C 0.03)": [(("msd_penultimate",), 0.03), (("mtt_pooled",), 0.003),
                                                         (("harmony",), 0.03)],
    "MSD penultimate & MTT pooled & harmony (C 0.3)": [(("msd_penultimate",), 0.03), (("mtt_pooled",), 0.003),
                                                        (("harmony",), 0.3)],
}


def harmony_record(path: Path) -> dict:
    """What ``extract`` stores for one audio file."""
    from m2e_plugin.audio import load_audio
    from m2e_plugin.harmony import recognize_chords
    from m2e_plugin.harmony.features import prepare
    from m2e_plugin.harmony.key import key_from_spectrum, key_input, key_scores
    from m2e_plugin.progress import native_stderr_captured

    with native_stderr_captured():  # libmpg123 talks on one 4Q MP3; the clip decodes
        y, sr = load_audio(path)
    notes = key_input(prepare(y, sr))  # (72, frames) note salience
    tonic, mode, confidence = key_from_spectrum(notes)
    return {"key_scores": np.asarray(key_scores(notes)).tolist(), "key": [tonic, mode, confidence],
            "chords": [list(c) for c in recognize_chords(y, sr)], "note_salience_mean": notes.mean(axis=1).tolist()}


def harmony_features(record: dict) -> np.ndarray:
    """The 47 harmony features of one :func:`harmony_record` (module docstring)."""
    from m2e_plugin.harmony.vocabulary import PITCH_CLASSES

    def pitch_class(name: str) -> int:
        flats = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E"}
        return PITCH_CLASSES.index(flats.get(name, name))

    scores = np.asarray(record["key_scores"], dtype=np.float64).reshape(2, 12)
    tonic, mode, confidence = record["key"]
    # chords and pitch classes relative to the key's relative-major tonic, so C major and A minor share a frame
    reference = (pitch_class(tonic) + (3 if mode == "minor" else 0)) % 12 if tonic else 0
    key = [scores[0].max(), scores[1].max(), scores[0].max() - scores[1].max(), float(mode == "minor"),
           float(confidence)]
    profile = np.roll(np.asarray(record["note_salience_mean"]).reshape(6, 12).sum(0), -reference)
    profile = profile / max(profile.sum(), 1e-9)
    time = {"maj": 0.0, "min": 0.0, "N": 0.0, "seventh": 0.0}
    roots = np.zeros((2, 12))
    changes, labels = 0, set()
    for start, end, label in record["chords"]:
        length = end - start
        if label == "N":
            time["N"] += length
            continue
        changes += 1
        labels.add(label)
        root, quality = label.split(":")
        family = int(quality.startswith("min"))
        time["min" if family else "maj"] += length
        time["seventh"] += length if "7" in quality else 0.0
        roots[family, (pitch_class(root) - reference) % 12] += length
    total = max(sum(end - start for start, end, _ in record["chords"]), 1e-9)
    chords = [time["maj"] / total, time["min"] / total, time["N"] / total, time["seventh"] / total,
              changes / total, float(len(labels))]
    return np.concatenate([key, chords, profile, (roots / total).ravel()])


def _extract_one(job: tuple[Path, Path]) -> str:
    import torch

    torch.set_num_threads(1)
    path, target = job
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(harmony_record(path)))
    os.replace(tmp, target)
    return path.stem


def extract(data_home: Path, out: Path, jobs: int, limit: int | None) -> None:
    from multiprocessing import Pool

    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    todo = [(p, out / f"{p.stem}.json") for p in sorted(data_home.glob("Q[1-4]/*.mp3"))[:limit]]
    todo = [(p, t) for p, t in todo if not t.is_file()]
    with Pool(jobs) as pool:
        for _ in tqdm(pool.imap_unordered(_extract_one, todo), total=len(todo), desc="harmony", unit="clip"):
            pass


def _log_proba(x_train, y_train, x_test, c: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    mean, std = x_train.mean(0), x_train.std(0) + 1e-6

    def scale(x):
        return np.clip((x - mean) / std, -8, 8)

    return LogisticRegression(C=c, max_iter=5000).fit(scale(x_train), y_train).predict_log_proba(scale(x_test))


def cross_validate(data, members, seed: int) -> np.ndarray:
    """Out-of-fold averaged log-probabilities (clips, 4) of one configuration with the product's folds."""
    from m2e_plugin.training.lite import cv_splits, load_config

    config = {**load_config(), "seed": seed}
    out = np.zeros((len(data.y), 4))
    for fit, val, test in cv_splits(config, data.y, data.groups):
        train = np.concatenate([fit, val])  # lite 2.1's members train on every training clip (fixed epochs)
        for kinds, c in members:
            x_train = np.concatenate([data.rows(train, ["even", "odd"], "mean", k)[0] for k in kinds], axis=1)
            y_train = data.rows(train, ["even", "odd"], "mean", kinds[0])[1]
            x_test = np.concatenate([data.rows(test, ["even"], "mean", k)[0] for k in kinds], axis=1)
            out[test] += _log_proba(x_train, y_train, x_test, c) / len(members)
    return out


def run_cv(data_home: Path, out: Path, only: list[str] | None) -> None:
    from m2e_plugin.models.lite import quadrant_softmax
    from m2e_plugin.training.features import default_cache_root
    from m2e_plugin.training.lite import FourQFeatures, quadrant_metrics
    from study_lite_features import TABLE_HEADER, table_row

    data = FourQFeatures.load(data_home, default_cache_root() / "features" / "lite" / "fourq",
                              kinds=("msd_penultimate", "mtt_pooled"))
    missing = [t for t in data.track_ids if not (out / f"{t}.json").is_file()]
    if missing:
        sys.exit(f"{out}: {len(missing)} clips without harmony records (run `extract` first), e.g. {missing[0]}")
    features = [harmony_features(json.loads((out / f"{t}.json").read_text())) for t in data.track_ids]
    # clip-level features repeated per patch, so every view pools them to themselves
    data.patches["harmony"] = [np.repeat(f[None], len(p), 0) for f, p in zip(features, data.penultimate)]
    print(TABLE_HEADER)
    for name, members in CONFIGS.items():
        if only and name not in only:
            continue
        res = [quadrant_metrics(data.y, quadrant_softmax(cross_validate(data, members, s))) for s in (0, 1, 2)]
        print(table_row(name, res), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="chord and key records of every clip (resumable)")
    e.add_argument("-j", "--jobs", type=int, default=1, help="worker processes (one thread each)")
    e.add_argument("--limit", type=int, default=None, help="only the first N clips (a check)")
    c = sub.add_parser("cv", help="cross-validate the configurations; prints a Markdown table")
    c.add_argument("--only", action="append", default=None, choices=list(CONFIGS), metavar="NAME",
                   help="run only this configuration (repeatable); default all")
    for q in (e, c):
        q.add_argument("--data-home", type=Path, required=True, help="the 4Q clips (Q1..Q4/*.mp3)")
        q.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT, help=f"study cache (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.cmd == "extract":
        extract(args.data_home, args.output, args.jobs, args.limit)
    else:
        run_cv(args.data_home, args.output, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
