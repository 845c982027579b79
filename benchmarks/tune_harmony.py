"""Choose the audio key estimator's and the chord recogniser's settings by leave-one-rendering-out
cross-validation over the tuning renderings (``m2e_plugin.harmony.renderings.TUNING``); the held-out rendering is
never loaded here.

For every candidate setting it scores every tuning rendering of the 67 usable music21 analyses (key: mean MIREX
weighted score; chords: duration-weighted mir_eval majmin over the corpus); then, for each rendering in turn, it
picks the candidate best on the *other* renderings and reports what that choice scores on the one left out (the
cross-validated estimate of how a choice made this way does on a timbre it was not made on). The setting shipped is
the one best on the mean of all tuning renderings.

* ``key-front``: the key's front end on the transcription network's note salience (power, compression, the bass
  note's threshold), among the settings that name the key of every synthetic cadence of ``tests/test_harmony.py``;
  #0 is the previous release's estimator on its CQT (``PREVIOUS_KEY_SETTINGS``).
* ``key``: the key's cues on that front end (:class:`~m2e_plugin.harmony.key.KeySettings`: opening chroma, final
  bass, overall bass, their profile, spans and weights). Its objective is the mean of two corpora per rendering:
  the music21 analyses and, with ``--vgmidi N`` (default 40), the first N VGMIDI pieces played by the same
  rendering (music21's key of the MIDI as label; :mod:`m2e_plugin.harmony.vgmidi_eval`), so a cue that only suits
  chorales and madrigals is not chosen. Besides leaving one rendering out it also leaves out half of the pieces
  (choose on the other renderings' other half), since all renderings play the same pieces.
* ``chords``: the chord recogniser's front ends (CQT and note salience, and the notes' weight in the fused frame
  scores) and decoder settings (majmin on every ``step``-th piece); one candidate is the CQT alone (the previous
  release's recogniser).

Renders and spectra come from the shared evaluation cache (``m2e evaluate-harmony --rendering tuning`` fills it;
this script fills what is missing, slowly).

Run: ``nice -n 10 python benchmarks/tune_harmony.py [--what key-front key chords] [--step 2] [--vgmidi 40]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np
from paths import shared_data  # benchmarks/paths.py

os.environ.setdefault("OMP_NUM_THREADS", "1")


def key_candidates():
    """Key front ends on the note salience around the shipped one; #0 is the previous release's (CQT) estimator."""
    from dataclasses import replace

    from m2e_plugin.harmony.features import FrontEnd
    from m2e_plugin.harmony.key import KEY_SETTINGS, PREVIOUS_KEY_SETTINGS

    out = [PREVIOUS_KEY_SETTINGS, KEY_SETTINGS]
    for power, compression, threshold in itertools.product((1.0, 2.0, 3.0), (1.0, 3.0, 10.0), (0.6, 0.8)):
        candidate = replace(KEY_SETTINGS, front=FrontEnd(power=power, compression=compression),
                            bass_threshold=threshold)
        if candidate not in out:
            out.append(candidate)
    return out


def cue_candidates():
    """Key cue settings on the shipped front end: opening chroma, final bass and overall bass (spans in seconds,
    weights relative to the whole track's chroma), and the profile of the opening and final cues."""
    from dataclasses import replace

    from m2e_plugin.harmony.key import KEY_SETTINGS, PROFILES

    out = []
    for cue_profile, opening_s, opening_w, ending_s, ending_w, bass_w in itertools.product(
            PROFILES, (3.0, 6.0, 10.0), (0.0, 0.5, 1.0), (3.0, 6.0, 10.0), (0.0, 0.25, 0.5), (0.0, 0.25, 0.5)):
        if (opening_w == 0 and opening_s != 6) or (ending_w == 0 and ending_s != 6) or \
                (opening_w == ending_w == 0 and cue_profile != "aarden"):
            continue  # the same estimator as another candidate
        out.append(replace(KEY_SETTINGS, profile="aarden", cue_profile=cue_profile, opening_seconds=opening_s,
                           opening_weight=opening_w, ending_seconds=ending_s, ending_weight=ending_w,
                           bass_weight=bass_w, bass_threshold=0.2))
    plain = replace(out[0], opening_weight=0.0, ending_weight=0.0, bass_weight=0.0)
    return [plain] + [c for c in out if c != plain]


def cue_scores(pieces, candidates) -> np.ndarray:
    """``(candidates, pieces)`` MIREX weighted scores; each piece's cues are computed once per pair of spans."""
    import mir_eval

    from m2e_plugin.harmony.key import MODES, key_cues, weigh_cues
    from m2e_plugin.harmony.vocabulary import PITCH_CLASSES

    names = [f"{PITCH_CLASSES[t]} {m}" for m in MODES for t in range(12)]
    out = np.zeros((len(candidates), len(pieces)))
    for j, p in enumerate(pieces):
        truth = " ".join(p["key"])
        table = np.array([mir_eval.key.weighted_score(truth, k) for k in names])
        cues = {}
        for i, c in enumerate(candidates):
            spans = (c.opening_seconds, c.ending_seconds)
            if spans not in cues:
                cues[spans] = key_cues(p["key_spec"], c)
            scores = weigh_cues(cues[spans], c)
            out[i, j] = table[int(np.argmax(scores))] if np.any(scores) else 0.0
    return out


def report_cues(candidates, corpus: dict, vgmidi: dict) -> None:
    """Leave one rendering out (and, nested, half of the pieces) with the objective: per rendering the mean of the
    corpus score and the VGMIDI score (corpus alone where no VGMIDI pieces)."""
    names = list(corpus)

    def objective(renderings, half=None):
        total = 0.0
        for n in renderings:
            parts = [corpus[n], vgmidi[n]] if vgmidi.get(n) is not None else [corpus[n]]
            total += np.mean([m[:, _half(m.shape[1], half)].mean(axis=1) for m in parts], axis=0)
        return total / len(renderings)

    def on(matrix, half=None):
        return matrix[:, _half(matrix.shape[1], half)].mean(axis=1)

    full = objective(names)
    order = np.argsort(-full)
    print(f"\naudio key cues: objective = mean over the {len(names)} tuning renderings of (corpus + VGMIDI) / 2 "
          f"(top 10 of {len(candidates)}; #0 = no cues)")
    print("| # | objective | corpus mean | VGMIDI mean | " + " | ".join(names) + " | setting |\n|" +
          "---|" * (len(names) + 5))
    for i in list(order[:10]) + [0]:
        vg = [on(vgmidi[n])[i] for n in names if vgmidi.get(n) is not None]
        print(f"| {i} | {full[i]:.3f} | {np.mean([on(corpus[n])[i] for n in names]):.3f} | "
              f"{np.mean(vg) if vg else float('nan'):.3f} | " +
              " | ".join(f"{on(corpus[n])[i]:.3f}" for n in names) + f" | {_cue_text(candidates[i])} |")
    rows = []
    for j, n in enumerate(names):
        others = [m for m in names if m != n]
        pick = int(np.argmax(objective(others)))
        nested = []
        for half in (0, 1):  # choose on the other renderings' other half of the pieces, score this half
            k = int(np.argmax(objective(others, 1 - half)))
            nested.append(on(corpus[n], half)[k])
        vg = f"{on(vgmidi[n])[pick]:.3f} (no cues {on(vgmidi[n])[0]:.3f})" if vgmidi.get(n) is not None else "-"
        rows.append((n, on(corpus[n])[pick], np.mean(nested), on(corpus[n])[0], vg, pick))
    print("\nleft-out rendering: corpus key of the pick made on the others | nested by piece halves | no cues | "
          "VGMIDI key of the pick | pick")
    for n, held, nested, plain, vg, pick in rows:
        print(f"| {n} | {held:.3f} | {nested:.3f} | {plain:.3f} | {vg} | #{pick} |")
    print(f"| mean | {np.mean([r[1] for r in rows]):.3f} | {np.mean([r[2] for r in rows]):.3f} | "
          f"{np.mean([r[3] for r in rows]):.3f} | | |")
    print(f"chosen (best objective): #{order[0]} {_cue_text(candidates[order[0]])}")


def _half(n: int, half):
    return slice(None) if half is None else slice(half, None, 2)


def _cue_text(c) -> str:
    return (f"{c.cue_profile} opening {c.opening_seconds:g} s x{c.opening_weight:g}, ending bass "
            f"{c.ending_seconds:g} s x{c.ending_weight:g}, bass x{c.bass_weight:g}")


def chord_candidates():
    """Chord recogniser candidates: ``(front end, decoder constants of m2e_plugin.harmony.chords to override)``;
    #0 is the shipped recogniser, #1 the CQT alone (the previous release's)."""
    from dataclasses import replace

    from m2e_plugin.harmony.chords import CHORD_FRONT_END as base
    from m2e_plugin.harmony.chords import NOTES_FRONT_END as notes

    out = [(base, {}), (base, {"NOTES_WEIGHT": 0.0, "_SHARPNESS": 6.0})]
    out += [(base, {"NOTES_WEIGHT": w}) for w in (0.3, 0.7)]
    out += [(base, {"NOTES_FRONT_END": replace(notes, power=p)}) for p in (2.0,)]
    out += [(base, {"NOTES_FRONT_END": replace(notes, compression=c)}) for c in (1.0,)]
    out += [(f, {}) for f in (replace(base, compression=2.0), replace(base, harmonics=(0.0, 0.1, 0.03)))]
    out += [(base, d) for d in ({"_SWITCH_COST": 5.0}, {"_SWITCH_COST": 9.0}, {"_SHARPNESS": 4.0},
                                {"_SHARPNESS": 8.0}, {"_FIFTH_BONUS": 3.0}, {"_SMOOTH_FRAMES": 5})]
    return out


def cadence_keys():
    """Semitone spectra of the guard test's synthetic cadences (``tests/test_harmony.py``: I IV V7 I vi ii V I and
    its minor counterpart, additive-synthesis notes over a bass) in eight keys, with their keys."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_harmony import SR, render

    from m2e_plugin.harmony.features import CHROMA_HOP, semitone_spectrum
    from m2e_plugin.harmony.key import key_input
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
        out.append(((key_input(y), semitone_spectrum(y, hop=CHROMA_HOP)), (tonic, mode)))
    return out


def key_score(pieces, settings) -> float:
    """Mean weighted score of ``settings``; the previous release's on the pieces' CQT (``key_cqt``)."""
    from m2e_plugin.harmony.evaluation import audio_key_scores
    from m2e_plugin.harmony.features import CHROMA_HOP
    from m2e_plugin.harmony.key import PREVIOUS_KEY_SETTINGS

    if settings == PREVIOUS_KEY_SETTINGS:
        return float(np.mean(audio_key_scores([{**p, "key_spec": p["key_cqt"]} for p in pieces], settings,
                                              CHROMA_HOP)))
    return float(np.mean(audio_key_scores(pieces, settings)))


def chord_score(pieces, candidate) -> float:
    from m2e_plugin.harmony import chords
    from m2e_plugin.harmony.evaluation import chord_totals

    front, constants = candidate
    saved = {name: getattr(chords, name) for name in constants}
    correct = scored = 0.0
    try:
        for name, value in constants.items():
            setattr(chords, name, value)
        for p in pieces:
            est = chords.decode_spectrum(p["chord_spec"], p["duration_s"], vocabulary="majmin", front=front,
                                         notes=p["notes"])
            c, s = chord_totals([tuple(x) for x in p["chords"]], est)["majmin"]
            correct += c
            scored += s
    finally:
        for name, value in saved.items():
            setattr(chords, name, value)
    return correct / max(scored, 1e-9)


def load(rendering):
    from m2e_plugin.harmony import evaluation as ev

    pieces, _ = ev.prepare_corpus(None, cache=ev.DEFAULT_CACHE, bpm=rendering.bpm, soundfont=rendering.soundfont(),
                                  program=rendering.program, jobs=1)
    out = []
    for info in pieces:
        spectra = ev.piece_spectra(info)
        out.append({**info, "chord_spec": spectra["chord"], "key_spec": spectra["notes"], "key_cqt": spectra["key_cqt"],
                    "notes": spectra["notes"], "duration_s": spectra["duration"]})
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
    print(f"#0 | {matrix[0].mean():.3f} | " + " | ".join(f"{x:.3f}" for x in matrix[0]))
    print("leave-one-rendering-out: " + ", ".join(f"{n} {h:.3f} (#{c})" for n, h, c in zip(names, held, chosen))
          + f"; mean {held.mean():.3f}")
    print(f"chosen (best mean): #{order[0]} {candidates[order[0]]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", nargs="+", default=["key-front", "key", "chords"],
                        choices=["key-front", "key", "chords"])
    parser.add_argument("--step", type=int, default=2, help="chords: use every STEP-th piece (decoding is slow)")
    parser.add_argument("--vgmidi", type=int, default=40, help="key: VGMIDI pieces per rendering (0: corpus only)")
    args = parser.parse_args()
    from m2e_plugin.harmony.renderings import TUNING

    t0 = time.time()
    data = {r.name: load(r) for r in TUNING if r.soundfont()}
    names = list(data)
    if "key" in args.what:
        from m2e_plugin.harmony.evaluation import DEFAULT_CACHE
        from m2e_plugin.harmony.vgmidi_eval import vgmidi_pieces

        shared = shared_data()
        cands = cue_candidates()
        corpus = {n: cue_scores(data[n], cands) for n in names}
        vgmidi = {}
        for r in TUNING:
            pieces = vgmidi_pieces(shared / "vgmidi", args.vgmidi, r, DEFAULT_CACHE) if args.vgmidi else []
            vgmidi[r.name] = cue_scores(pieces, cands) if pieces else None
        report_cues(cands, corpus, vgmidi)
    if "key-front" in args.what:
        # A candidate must name the key of every plain cadence (the guard test's); strong harmonic removal with a
        # light compression takes real octave-doubled notes out too and fails some minor cadences.
        from m2e_plugin.harmony.features import CHROMA_HOP
        from m2e_plugin.harmony.key import PREVIOUS_KEY_SETTINGS, key_from_spectrum

        def names_every_cadence(c) -> bool:
            if c == PREVIOUS_KEY_SETTINGS:
                return all(key_from_spectrum(cqt, c, CHROMA_HOP)[:2] == k for (_, cqt), k in cadences)
            return all(key_from_spectrum(notes, c)[:2] == k for (notes, _), k in cadences)

        cadences = cadence_keys()
        cands = [c for c in key_candidates() if names_every_cadence(c)]
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
