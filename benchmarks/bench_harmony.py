"""Harmony benchmark: chord recognition and key estimation on rendered audio, and speed.

What it measures (printed as tables):

1. Synthetic progressions with known chords and key: random diatonic progressions (triads and sevenths) in
   random keys, written as MIDI and rendered with fluidsynth through several General MIDI instruments.
   * offline chord recogniser: mir_eval root / majmin / sevenths / mirex (duration-weighted, all renders pooled);
   * keys: MIREX weighted key score and exact accuracy of ``estimate_key`` (audio), ``key_from_chords`` on the
     recognised chords and on the true chords;
   * ``key_from_chords`` vs the reference's own path (chords -> pretty_midi file -> music21 ``analyze('key')``):
     agreement on the recognised chords.
2. VGMIDI pieces (``../shared/data/vgmidi``, when present) played by several renderings' instruments:
   ``estimate_key`` (and its previous settings) on the rendered audio against music21's key of the symbolic MIDI
   (agreement with a symbolic analysis, not ground truth).
3. Speed on CPU on a 3-minute render: offline recogniser, audio key, the transcription network's note salience
   that both read (part of each), the previous release's recogniser and key (CQT only), the BTC network
   (published size, random weights: timing only), as multiples of real time.

Accuracy on real (polyphonic, annotated) music is measured by ``m2e evaluate-harmony`` (music21's corpus).

Needs fluidsynth and a General MIDI soundfont (Debian: ``fluidsynth timgm6mb-soundfont``) and music21
(``pip install -e .[harmony]``). Run: ``python benchmarks/bench_harmony.py [--n 40] [--vgmidi 30]``; speed only:
``--n 0 --vgmidi 0``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from m2e_plugin.audio import load_audio
from m2e_plugin.harmony import estimate_key, key_from_chords, recognize_chords
from m2e_plugin.harmony.evaluation import chord_totals
from m2e_plugin.harmony.vocabulary import PITCH_CLASSES, QUALITY_INTERVALS, chord_pitch_classes, split_label
from paths import shared_data  # benchmarks/paths.py

SR = 22050
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2",
              "/usr/share/soundfonts/default.sf2")
PROGRAMS = {"piano": 0, "e-piano": 4, "organ": 19, "guitar": 24, "strings": 48}
# Diatonic chords per scale degree (semitones above the tonic, quality); sevenths appear with lower weight.
MAJOR_DEGREES = [(0, "maj"), (2, "min"), (4, "min"), (5, "maj"), (7, "maj"), (9, "min"), (0, "maj7"),
                 (2, "min7"), (7, "7"), (11, "hdim7"), (5, "maj7"), (9, "min7")]
MINOR_DEGREES = [(0, "min"), (5, "min"), (7, "maj"), (8, "maj"), (3, "maj"), (10, "maj"), (7, "7"), (0, "min7"),
                 (2, "dim"), (5, "min7"), (8, "maj7"), (2, "hdim7")]
ROOT_PATH = Path(__file__).resolve().parents[1]


def find_soundfont(explicit: str | None) -> str:
    for candidate in ([explicit] if explicit else []) + list(SOUNDFONTS):
        if candidate and Path(candidate).is_file():
            return candidate
    sys.exit("no General MIDI soundfont found: install timgm6mb-soundfont or pass --soundfont PATH")


def random_progression(rng: np.random.Generator):
    tonic = int(rng.integers(12))
    mode = "major" if rng.random() < 0.5 else "minor"
    degrees = MAJOR_DEGREES if mode == "major" else MINOR_DEGREES
    weights = np.array([3.0] * 6 + [1.0] * 6)
    chords, t = [], 0.0
    first = (0, "maj") if mode == "major" else (0, "min")
    picks = [first] + [degrees[i] for i in rng.choice(len(degrees), size=int(rng.integers(6, 11)),
                                                      p=weights / weights.sum())] + [first]
    for interval, quality in picks:
        d = 0.5 * int(rng.integers(2, 7))  # 1-3 s on a half-second grid
        chords.append((t, t + d, f"{PITCH_CLASSES[(tonic + interval) % 12]}:{quality}"))
        t += d
    return chords, PITCH_CLASSES[tonic], mode


def write_chord_midi(chords, program: int, path: Path) -> None:
    """Root in octave 2 plus close-position chord tones from octave 4, one note-on per chord."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    for start, end, label in chords:
        root, quality = split_label(label)
        base = 60 + PITCH_CLASSES.index(root)
        pitches = [base - 24] + [base + i for i in QUALITY_INTERVALS[quality]]
        for pitch in pitches:
            inst.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=start, end=end - 0.02))
    pm.instruments.append(inst)
    pm.write(str(path))


def render(midi: Path, wav: Path, soundfont: str) -> np.ndarray:
    subprocess.run(["fluidsynth", "-ni", "-g", "0.6", "-r", str(SR), "-o", "synth.dynamic-sample-loading=1", "-F",
                    str(wav), soundfont, str(midi)],
                   check=True, capture_output=True)
    return load_audio(str(wav), target_sr=SR)[0]


def reference_key_path(chords, tmp: Path):
    """Music2Emo's key: chords -> MIDI (pitch 48 + pc per run, velocity 120) with pretty_midi -> music21."""
    import pretty_midi
    from music21 import converter

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    for p in range(12):
        run = None
        for i, (start, end, label) in enumerate(chords):
            on = bool(chord_pitch_classes(label)[p])
            if on and run is None:
                run = start
            if run is not None and (not on or i == len(chords) - 1):
                inst.notes.append(pretty_midi.Note(velocity=120, pitch=48 + p, start=run, end=end if on else start))
                run = None
    pm.instruments.append(inst)
    path = tmp / "ref_key.mid"
    pm.write(str(path))
    try:
        k = converter.parse(str(path)).analyze("key")
    except Exception:
        return None, None
    return PITCH_CLASSES[k.tonic.pitchClass], k.mode


def key_score(truth, estimate):
    from m2e_plugin.harmony.evaluation import key_weighted_score

    return key_weighted_score(truth, estimate), estimate[0] is not None and truth[:2] == estimate[:2]


def bench_synthetic(n: int, seed: int, soundfont: str, tmp: Path, vocabulary: str):
    rng = np.random.default_rng(seed)
    totals: dict[str, list[float]] = {}
    keys: dict[str, list[tuple[float, bool]]] = {"estimate_key (audio)": [], "key_from_chords (recognised)": [],
                                                 "key_from_chords (true chords)": []}
    agree = []
    programs = list(PROGRAMS.items())
    for i in range(n):
        chords, tonic, mode = random_progression(rng)
        name, program = programs[i % len(programs)]
        write_chord_midi(chords, program, tmp / "prog.mid")
        y = render(tmp / "prog.mid", tmp / "prog.wav", soundfont)
        estimate = recognize_chords(y, SR, vocabulary=vocabulary)
        for metric, (hit, dur) in chord_totals(chords, estimate, ("root", "majmin", "sevenths", "mirex")).items():
            acc = totals.setdefault(metric, [0.0, 0.0])
            acc[0] += hit
            acc[1] += dur
        truth = (tonic, mode)
        keys["estimate_key (audio)"].append(key_score(truth, estimate_key(y, SR)))
        from_est = key_from_chords(estimate)
        keys["key_from_chords (recognised)"].append(key_score(truth, from_est))
        keys["key_from_chords (true chords)"].append(key_score(truth, key_from_chords(chords)))
        agree.append(reference_key_path(estimate, tmp) == from_est[:2])
    print(f"\nChord recognition (offline, vocabulary={vocabulary}), {n} fluidsynth renders "
          f"({', '.join(PROGRAMS)}), {sum(v[1] for v in totals.values()) / len(totals):.0f} s of audio")
    print("| metric | duration-weighted accuracy |\n|---|---|")
    for metric, (hit, dur) in totals.items():
        print(f"| {metric} | {hit / dur:.3f} |")
    print("\nKey estimation on the same renders")
    print("| method | MIREX weighted score | exact accuracy |\n|---|---|---|")
    for method, scores in keys.items():
        print(f"| {method} | {np.mean([s for s, _ in scores]):.3f} | {np.mean([e for _, e in scores]):.3f} |")
    print(f"\nkey_from_chords == reference path (pretty_midi + music21 analyze('key')) on recognised chords: "
          f"{np.mean(agree):.3f} ({sum(agree)}/{len(agree)})")


def bench_vgmidi(k: int, renderings: list[str]):
    """``estimate_key`` on VGMIDI pieces played by each named rendering's soundfont and instrument (every part
    set to that GM program, the file's own tempo; :mod:`m2e_plugin.harmony.vgmidi_eval`, cached), against music21's
    key of the MIDI; also the previous release's estimator (the same chroma, no opening/final-bass/bass cues)."""
    from dataclasses import replace

    from m2e_plugin.harmony.evaluation import DEFAULT_CACHE, audio_key_scores
    from m2e_plugin.harmony.features import CHROMA_HOP
    from m2e_plugin.harmony.key import KEY_SETTINGS, PREVIOUS_KEY_SETTINGS
    from m2e_plugin.harmony.renderings import rendering
    from m2e_plugin.harmony.vgmidi_eval import vgmidi_files, vgmidi_pieces

    shared = shared_data()
    if not vgmidi_files(shared / "vgmidi", k):
        print("\nVGMIDI: skipped (../shared/data/vgmidi not found)")
        return
    settings = {"estimate_key": KEY_SETTINGS,
                "no cues": replace(KEY_SETTINGS, opening_weight=0.0, ending_weight=0.0, bass_weight=0.0),
                "previous release (CQT)": PREVIOUS_KEY_SETTINGS}
    print(f"\nVGMIDI (first {k} pieces, first 60 s, every part played by the rendering's instrument): MIREX weighted "
          "score of the audio key against music21's key of the MIDI (agreement with a symbolic analysis, not ground "
          "truth)")
    print("| rendering | pieces | " + " | ".join(settings) + " |\n|---|---|" + "---|" * len(settings))
    for name in renderings:
        r = rendering(name)
        if r.soundfont() is None:
            print(f"| {name} | soundfont not installed ({r.package}) |")
            continue
        pieces = vgmidi_pieces(shared / "vgmidi", k, r, DEFAULT_CACHE)
        cqt = [{**p, "key_spec": p["key_cqt"]} for p in pieces]
        scores = {s: (audio_key_scores(cqt, st, hop=CHROMA_HOP) if st is PREVIOUS_KEY_SETTINGS else
                      audio_key_scores(pieces, st)) for s, st in settings.items()}
        print(f"| {name} | {len(pieces)} | " + " | ".join(f"{np.mean(v):.3f}" for v in scores.values()) + " |")


def bench_speed(soundfont: str, tmp: Path, threads: int):
    import torch

    from m2e_plugin.harmony.btc import BTCRecognizer, build_btc
    from m2e_plugin.harmony.chords import chord_spectrum, decode_spectrum
    from m2e_plugin.harmony.features import CHROMA_HOP, semitone_spectrum
    from m2e_plugin.harmony.key import PREVIOUS_KEY_SETTINGS, key_from_spectrum
    from m2e_plugin.harmony.transcription import note_salience

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    chords, t = [], 0.0
    while t < 180:  # the yardstick: a 3-minute track
        chords.append((t, t + 2.0, f"{PITCH_CLASSES[rng.integers(12)]}:maj"))
        t += 2.0
    write_chord_midi(chords, 0, tmp / "speed.mid")
    y = render(tmp / "speed.mid", tmp / "speed.wav", soundfont)
    seconds = y.size / SR
    btc = BTCRecognizer(build_btc(), 0.0, 1.0)
    rows = [("recognize_chords offline", lambda: recognize_chords(y, SR)),
            ("estimate_key", lambda: estimate_key(y, SR)),
            ("  of which: note salience (transcription network), in both", lambda: note_salience(y)),
            ("previous release's recognize_chords offline (CQT only)",
             lambda: decode_spectrum(chord_spectrum(y), seconds)),
            ("previous release's estimate_key (CQT)",
             lambda: key_from_spectrum(semitone_spectrum(y, hop=CHROMA_HOP), PREVIOUS_KEY_SETTINGS, CHROMA_HOP)),
            ("BTC (published size, random weights)", lambda: btc.recognize(y, SR))]
    print(f"\nSpeed on {seconds:.0f} s of audio, CPU, torch threads={threads} (best of 3, after one warm-up run)")
    print("| step | seconds | x real time |\n|---|---|---|")
    for name, fn in rows:
        fn()
        best = min(_timed(fn) for _ in range(3))
        print(f"| {name} | {best:.3f} | {seconds / best:.0f} |")


def bench_long(minutes: float) -> None:
    """Peak memory of the note salience (the network run window by window) on ``minutes`` of audio: its growth
    beyond the input array and the output should stay small and flat (a batch of windows at a time)."""
    import resource

    import torch

    from m2e_plugin.harmony.transcription import note_salience

    torch.set_num_threads(1)
    note_salience(np.zeros(SR, np.float32))  # load the network first
    rng = np.random.default_rng(0)
    n = int(minutes * 60 * SR)
    y = np.zeros(n, np.float32)
    t = np.arange(2 * SR) / SR
    for start in range(0, n - 2 * SR, 2 * SR):  # a new random triad every 2 s
        for midi in 48 + rng.choice(24, 3, replace=False):
            y[start:start + 2 * SR] += 0.1 * np.sin(2 * np.pi * 440 * 2 ** ((midi - 69) / 12) * t)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    notes = note_salience(y)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nnote salience on {minutes:g} min of audio ({y.nbytes / 2**20:.0f} MB of samples): {seconds:.1f} s, "
          f"output {notes.nbytes / 2**20:.0f} MB, peak RSS {before:.0f} MB before -> {peak:.0f} MB")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40, help="synthetic progressions to render")
    parser.add_argument("--vgmidi", type=int, default=30, help="VGMIDI pieces (0 to skip)")
    parser.add_argument("--vgmidi-renderings", nargs="+", default=["fluidr3-piano", "fluidr3-organ", "timgm-strings"],
                        help="renderings (m2e_plugin.harmony.renderings) that play the VGMIDI pieces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocabulary", default="sevenths")
    parser.add_argument("--soundfont")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--long-minutes", type=float, default=0,
                        help="also measure the note salience's peak memory on this many minutes of audio")
    args = parser.parse_args()
    if shutil.which("fluidsynth") is None:
        sys.exit("fluidsynth not found (apt-get install fluidsynth)")
    soundfont = find_soundfont(args.soundfont)
    print(f"soundfont: {Path(soundfont).name}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.n:
            bench_synthetic(args.n, args.seed, soundfont, tmp, args.vocabulary)
        if args.vgmidi:
            bench_vgmidi(args.vgmidi, args.vgmidi_renderings)
        if not args.skip_speed:
            bench_speed(soundfont, tmp, args.threads)
        if args.long_minutes:
            bench_long(args.long_minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
