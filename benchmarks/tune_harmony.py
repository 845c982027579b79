"""Choose the audio key estimator's and the chord recogniser's front-end settings by leave-one-rendering-out
cross-validation over the tuning renderings (``m2e_plugin.harmony.renderings.TUNING``); the held-out rendering is
never loaded here.

For every candidate setting it scores every tuning rendering of the 67 usable music21 analyses (key: mean MIREX
weighted score; chords: duration-weighted mir_eval majmin over the corpus); then, for each rendering in turn, it
picks the candidate best on the *other* renderings and reports what that choice scores on the one left out (the
cross-validated estimate of how a choice made this way does on a timbre it was not made on). The setting shipped is
the one best on the mean of all tuning renderings (for the key, among those that name the key of every synthetic
cadence of ``tests/test_harmony.py``). Renders and spectra come from the shared evaluation cache
(``m2e evaluate-harmony --rendering tuning`` fills it; this script fills what is missing, slowly).

Run: ``nice -n 10 python benchmarks/tune_harmony.py [--what key chords] [--step 2]`` (chords are scored on every
``step``-th piece: decoding six renderings per candidate is slow on a shared machine).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def key_candidates():
    from m2e_plugin.harmony.features import FrontEnd
    from m2e_plugin.harmony.key import KeySettings

    out = [KeySettings()]  # the previous release's: plain chroma, compression 10
    for level, compression, harmonics, octaves in itertools.product(
            (False, True), (1.0, 10.0),
            ((0.0, 0.0, 0.0), (0.3, 0.2, 0.05), (0.5, 0.5, 0.1), (0.7, 0.5, 0.2), (0.7, 0.7, 0.15)),
            (None, (1.0, 1.0, 1.0, 0.8, 0.5, 0.3))):
        candidate = KeySettings(FrontEnd(level=level, harmonics=harmonics, compression=compression,
                                         octave_weights=octaves), "aarden")
        if candidate not in out:
            out.append(candidate)
    return out


def chord_candidates():
    from dataclasses import replace

    from m2e_plugin.harmony.chords import CHORD_FRONT_END as base

    # A first look on three renderings (every third piece) ruled out whitening and stronger harmonic removal.
    return [base, replace(base, level=True), replace(base, harmonics=(0.0, 0.1, 0.03)),
            replace(base, octave_weights=(1.0, 1.0, 1.0, 1.0, 0.7, 0.5))]


def cadence_keys():
    """Semitone spectra of the guard test's synthetic cadences (``tests/test_harmony.py``: I IV V7 I vi ii V I and
    its minor counterpart, additive-synthesis notes over a bass) in eight keys, with their keys."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_harmony import SR, render

    from m2e_plugin.harmony.features import CHROMA_HOP, semitone_spectrum
    from m2e_plugin.harmony.vocabulary import PITCH_CLASSES, pitch_class

    out = []
    for tonic, mode in (("C", "major"), ("G", "major"), ("A#", "major"), ("A", "minor"), ("F#", "minor"),
                        ("E", "minor"), ("D", "minor"), ("C", "minor")):
        t = pitch_class(tonic)
        degrees = ([(0, "maj"), (5, "maj"), (7, "7"), (0, "maj"), (9, "min"), (2, "min"), (7, "maj"), (0, "maj")]
                   if mode == "major" else
                   [(0, "min"), (5, "min"), (7, "7"), (0, "min"), (8, "maj"), (5, "min"), (7, "maj"), (0, "min")])
        y, _ = render([(f"{PITCH_CLASSES[(t + d) % 12]}:{q}", 1.0) for d, q in degrees])
        assert SR == 22050
        out.append((semitone_spectrum(y, hop=CHROMA_HOP), (tonic, mode)))
    return out


def key_score(pieces, settings) -> float:
    import mir_eval

    from m2e_plugin.harmony.key import key_from_spectrum

    scores = []
    for p in pieces:
        tonic, mode, _ = key_from_spectrum(p["key_spec"], settings)
        scores.append(mir_eval.key.weighted_score(" ".join(p["key"]), f"{tonic} {mode}" if tonic else "C major"))
    return float(np.mean(scores))


def chord_score(pieces, front) -> float:
    from m2e_plugin.harmony.chords import decode_spectrum
    from m2e_plugin.harmony.evaluation import chord_totals

    correct = scored = 0.0
    for p in pieces:
        est = decode_spectrum(p["chord_spec"], p["duration_s"], vocabulary="majmin", front=front)
        c, s = chord_totals([tuple(x) for x in p["chords"]], est)["majmin"]
        correct += c
        scored += s
    return correct / max(scored, 1e-9)


def load(rendering):
    from m2e_plugin.harmony import evaluation as ev

    pieces, _ = ev.prepare_corpus(None, cache=ev.DEFAULT_CACHE, bpm=rendering.bpm, soundfont=rendering.soundfont(),
                                  program=rendering.program, jobs=1)
    out = []
    for info in pieces:
        chord_spec, key_spec, duration = ev.piece_spectra(info)
        out.append({**info, "chord_spec": chord_spec, "key_spec": key_spec, "duration_s": duration})
    return out


def cross_validate(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per left-out rendering: the score of the candidate chosen on the others, and that candidate's index."""
    held, chosen = [], []
    for j in range(matrix.shape[1]):
        best = int(np.argmax(np.delete(matrix, j, axis=1).mean(axis=1)))
        held.append(matrix[best, j])
        chosen.append(best)
    return np.array(held), np.array(chosen)


def report(what, candidates, matrix, names) -> None:
    held, chosen = cross_validate(matrix)
    order = np.argsort(-matrix.mean(axis=1))
    print(f"\n{what}: candidates by mean over the {len(names)} tuning renderings (top 10 of {len(candidates)})")
    print("| # | mean | " + " | ".join(names) + " | setting |\n|" + "---|" * (len(names) + 3))
    for i in order[:10]:
        print(f"| {i} | {matrix[i].mean():.3f} | " + " | ".join(f"{x:.3f}" for x in matrix[i]) + f" | {candidates[i]} |")
    print(f"#0 (key: the previous release's) | {matrix[0].mean():.3f} | " + " | ".join(f"{x:.3f}" for x in matrix[0]))
    print(f"leave-one-rendering-out: " + ", ".join(f"{n} {h:.3f} (#{c})" for n, h, c in zip(names, held, chosen))
          + f"; mean {held.mean():.3f}")
    print(f"chosen (best mean): #{order[0]} {candidates[order[0]]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", nargs="+", default=["key", "chords"], choices=["key", "chords"])
    parser.add_argument("--step", type=int, default=2, help="chords: use every STEP-th piece (decoding is slow)")
    args = parser.parse_args()
    from m2e_plugin.harmony.renderings import TUNING

    t0 = time.time()
    data = {r.name: load(r) for r in TUNING if r.soundfont()}
    names = list(data)
    if "key" in args.what:
        # A candidate must name the key of every plain cadence (the guard test's); strong harmonic removal with a
        # light compression takes real octave-doubled notes out too and fails some minor cadences.
        from m2e_plugin.harmony.key import key_from_spectrum

        cadences = cadence_keys()
        cands = [c for c in key_candidates() if all(key_from_spectrum(s, c)[:2] == k for s, k in cadences)]
        report("audio key (mean MIREX weighted score)", cands,
               np.array([[key_score(data[n], c) for n in names] for c in cands]), names)
    if "chords" in args.what:
        cands = chord_candidates()
        report(f"chords (majmin, every {args.step}. piece)", cands,
               np.array([[chord_score(data[n][::args.step], c) for n in names] for c in cands]), names)
    print(f"\n{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
