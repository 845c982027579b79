"""Study: does a learned transcription front end (basic-pitch's NMP note posteriors) make the chord recogniser and
the audio key hold across timbres better than the hand-made CQT semitone spectrum?

On the cached renderings of music21's analysed corpus (``m2e evaluate-harmony --rendering tuning`` fills the
cache), it runs the NMP network (the package's PyTorch port, one thread; equal to the wheel's ONNX model run by
onnxruntime within 2e-6, ``tests/test_basic_pitch.py``) on every piece, pools its note posteriors onto the chord
recogniser's 1024-sample grid (:func:`m2e_plugin.harmony.evaluation.piece_notes`, cached beside each render), and
feeds them, as a C1..B6 "semitone spectrum", to the EXISTING template chord decoder
(:func:`m2e_plugin.harmony.chords.decode_spectrum`) and key cues (:func:`m2e_plugin.harmony.key.key_from_spectrum`),
with a few front-end / decoder variants. Every candidate, the previous release's CQT front end included (#0), is scored on every
tuning rendering (chords: mir_eval majmin on every ``--step``-th piece; key: mean MIREX weighted score over all
pieces) and chosen by leave-one-rendering-out cross-validation, as ``benchmarks/tune_harmony.py`` does. The
held-out rendering is never loaded here.

Run: ``nice -n 10 python benchmarks/study_transcription_harmony.py [--renderings tuning] [--step 2]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from paths import shared_data  # benchmarks/paths.py

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def features(piece: dict) -> dict:
    """The candidate 'semitone spectra' of a piece: the previous release's CQT ones, the network's note salience, the chord
    CQT masked by the note salience (same 1024-sample grid)."""
    return {"cqt": piece["chord_spec"], "cqt_key": piece["key_cqt"], "notes": piece["notes"],
            "cqt*notes": piece["chord_spec"] * piece["notes"]}


# The previous release's decoder constants that this study changes; candidates start from them.
PREVIOUS_DECODER = {"_SHARPNESS": 6.0}


def chord_candidates():
    """``(label, feature, front end, decoder overrides)``; #0 is the previous release's recogniser on its CQT."""
    from m2e_plugin.harmony.chords import CHORD_FRONT_END
    from m2e_plugin.harmony.features import FrontEnd

    out = [("previous release (CQT)", "cqt", CHORD_FRONT_END, {})]
    for power in (1.0, 2.0):
        for compression in (0.1, 1.0):
            out.append((f"notes^{power:g} log1p({compression:g}x)", "notes",
                        FrontEnd(power=power, compression=compression), {}))
    base = FrontEnd(power=2.0, compression=0.1)
    for overrides in ({"_SHARPNESS": 10.0}, {"_SWITCH_COST": 10.0}, {"_SMOOTH_FRAMES": 1}):
        out.append((f"notes^2 log1p(0.1x) {overrides}", "notes", base, overrides))
    out.append(("CQT x notes, log1p(5x)", "cqt*notes", FrontEnd(compression=5.0), {}))
    # Late fusion: the frame scores (template cosines) of the CQT chroma and of the notes' chroma, averaged.
    for weight in (0.2, 0.3, 0.5, 0.7):
        for power in (1.0, 2.0):
            out.append((f"fused: {weight:g} x CQT + {1 - weight:g} x notes^{power:g} log1p(0.1x)", "fused",
                        (weight, FrontEnd(power=power, compression=0.1)), {}))
    for overrides in ({"_SHARPNESS": 8.0}, {"_SWITCH_COST": 5.0}, {"_SWITCH_COST": 9.0}, {"_SMOOTH_FRAMES": 5}):
        out.append((f"fused: 0.3 x CQT + 0.7 x notes^1 log1p(0.1x) {overrides}", "fused",
                    (0.3, FrontEnd(power=1.0, compression=0.1)), overrides))
    return out


def key_candidates():
    """``(label, feature, KeySettings, hop)``; #0 is the previous release's estimator on its CQT, the others its
    cues on the note salience."""
    from m2e_plugin.harmony.features import CHROMA_HOP, FrontEnd
    from m2e_plugin.harmony.key import PREVIOUS_KEY_SETTINGS as KEY_SETTINGS
    from m2e_plugin.harmony.transcription import GRID_HOP

    out = [("previous release (CQT)", "cqt", KEY_SETTINGS, CHROMA_HOP)]
    plain = replace(KEY_SETTINGS, opening_weight=0.0, ending_weight=0.0, bass_weight=0.0)
    for power in (1.0, 2.0):
        for compression in (0.3, 3.0):
            front = FrontEnd(power=power, compression=compression)
            name = f"notes^{power:g} log1p({compression:g}x)"
            out.append((f"{name}, previous cues", "notes", replace(KEY_SETTINGS, front=front), GRID_HOP))
            out.append((f"{name}, no cues", "notes", replace(plain, front=front), GRID_HOP))
    front = FrontEnd(power=2.0, compression=3.0)
    for profile in ("krumhansl", "temperley"):
        out.append((f"notes^2 log1p(3x), previous cues, {profile}", "notes",
                    replace(KEY_SETTINGS, front=front, profile=profile), GRID_HOP))
    for threshold in (0.4, 0.6, 0.8):
        out.append((f"notes^2 log1p(3x), previous cues, bass threshold {threshold}", "notes",
                    replace(KEY_SETTINGS, front=front, bass_threshold=threshold), GRID_HOP))
    return out


def chord_score(pieces, feature, front, overrides) -> float:
    """majmin of the template decoder on one feature, or (``"fused"``, ``front`` = (CQT weight, notes front end)) on
    the weighted mean of the CQT's and the notes' frame scores (:func:`m2e_plugin.harmony.chords.decode_spectrum`)."""
    from m2e_plugin.harmony.chords import CHORD_FRONT_END
    from tune_harmony import chord_score as tuned_chord_score

    overrides = {**PREVIOUS_DECODER, **overrides}
    if feature == "fused":
        weight, notes_front = front
        return tuned_chord_score(pieces, (CHORD_FRONT_END, {"NOTES_WEIGHT": 1 - weight,
                                                            "NOTES_FRONT_END": notes_front, **overrides}))
    return tuned_chord_score([{**p, "chord_spec": p[feature]} for p in pieces],
                             (front, {"NOTES_WEIGHT": 0.0, **overrides}))


def key_score(pieces, feature, settings, hop) -> float:
    from m2e_plugin.harmony.evaluation import key_weighted_score
    from m2e_plugin.harmony.key import key_from_spectrum

    return float(np.mean([key_weighted_score(p["key"], key_from_spectrum(p[feature], settings, hop)) for p in pieces]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--renderings", nargs="+", default=["tuning"], help="names, or 'tuning'")
    parser.add_argument("--step", type=int, default=2, help="chords: score every STEP-th piece")
    parser.add_argument("--what", nargs="+", default=["chords", "key"], choices=["chords", "key", "cache"])
    parser.add_argument("--vgmidi", type=int, default=0,
                        help="key: also score the first N VGMIDI pieces per rendering (0: corpus only); the choice "
                        "is then made on the mean of the two corpora, as tune_harmony.py does")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from tune_harmony import load, report

    from m2e_plugin.harmony.renderings import HELD_OUT, select

    chosen = [r for r in select(args.renderings) if r.soundfont()]
    if any(r.name == HELD_OUT.name for r in chosen):
        parser.error("the held-out rendering is only scored by m2e evaluate-harmony, never studied")
    t0 = time.time()
    data = {}
    for r in chosen:
        pieces = load(r)
        t1, seconds = time.time(), 0.0
        for p in pieces:
            p.update(features(p))
            seconds += p["duration_s"]
        print(f"{r.name}: {len(pieces)} pieces, {seconds / 60:.0f} min, network/cache {time.time() - t1:.0f} s",
              flush=True)
        data[r.name] = pieces
    names = list(data)
    vgmidi = {}
    if args.vgmidi and ("key" in args.what or "cache" in args.what):
        from m2e_plugin.harmony.evaluation import DEFAULT_CACHE
        from m2e_plugin.harmony.vgmidi_eval import vgmidi_pieces

        shared = shared_data()
        for r in chosen:
            t1 = time.time()
            vgmidi[r.name] = [{**p, **features(p)} for p in vgmidi_pieces(shared / "vgmidi", args.vgmidi, r,
                                                                              DEFAULT_CACHE)]
            print(f"{r.name}: {len(vgmidi[r.name])} VGMIDI pieces, {time.time() - t1:.0f} s", flush=True)
    if "key" in args.what:
        cands = key_candidates()
        matrix = np.array([[key_score(data[n], "cqt_key" if f == "cqt" else f, s, hop) for n in names]
                           for _, f, s, hop in cands])
        report("audio key, corpus (mean MIREX weighted score, all pieces)", [c[0] for c in cands], matrix, names)
        if vgmidi:
            vg = np.array([[key_score(vgmidi[n], "cqt_key" if f == "cqt" else f, s, hop) for n in names]
                           for _, f, s, hop in cands])
            report(f"audio key, VGMIDI ({args.vgmidi} pieces)", [c[0] for c in cands], vg, names)
            report("audio key, objective = (corpus + VGMIDI) / 2 (the choice)", [c[0] for c in cands],
                   (matrix + vg) / 2, names)
    if "chords" in args.what:
        cands = chord_candidates()
        matrix = np.array([[chord_score(data[n][::args.step], f, front, o) for n in names]
                           for _, f, front, o in cands])
        report(f"chords (majmin, every {args.step}. piece)", [c[0] for c in cands], matrix, names)
    if "cache" in args.what:
        print("note salience cached")
    print(f"\n{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
