"""Harmony: chord vocabulary, offline chord recognition, key estimation, Music2Emo chord tokens."""

from __future__ import annotations

import numpy as np
import pytest

from m2e_plugin.audio import AudioError
from m2e_plugin.harmony import (BTC_LABELS, encode_music2emo, estimate_key, key_from_chords, mode_id,
                                normalise_chords, recognize_chords)
from m2e_plugin.harmony.key import chord_pitch_distribution, key_correlations
from m2e_plugin.harmony.vocabulary import (PITCH_CLASSES, QUALITY_INTERVALS, chord_pitch_classes, pitch_class,
                                           split_label)

SR = 22050


def render(chords, sr=SR, seed=0, harmonics=None):
    """Additive-synthesis chords: (label, seconds) pairs -> audio and the reference (start, end, label) list.

    Each chord note gets 6 harmonics (amplitudes ``harmonics``, default 1/h), a bass note an octave below the root,
    and a short fade at both ends of every chord, over a little noise; enough like an instrument for chroma-based
    recognisers."""
    amplitudes = [0.25 / h for h in range(1, 7)] if harmonics is None else [0.25 * a for a in harmonics]
    rng = np.random.default_rng(seed)
    pieces, reference, t0 = [], [], 0.0
    for label, seconds in chords:
        n = int(seconds * sr)
        t = np.arange(n) / sr
        y = np.zeros(n)
        root, quality = split_label(label)
        if root is not None:
            base = 48 + pitch_class(root)
            notes = [base + i for i in QUALITY_INTERVALS[quality]] + [base - 12]
            for midi in notes:
                f = 440.0 * 2 ** ((midi - 69) / 12)
                for h, amplitude in enumerate(amplitudes, start=1):
                    y += amplitude * np.sin(2 * np.pi * f * h * t + rng.uniform(0, 2 * np.pi))
            fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)
            y *= fade * np.exp(-t / 3.0)
        pieces.append(y)
        reference.append((t0, t0 + n / sr, label))
        t0 += n / sr
    y = np.concatenate(pieces)
    y = 0.4 * y / max(np.abs(y).max(), 1e-9) + 1e-3 * rng.standard_normal(y.size)
    return y.astype(np.float32), reference


def mir_eval_score(reference, estimate, metric):
    import mir_eval

    ref_i = np.array([[s, e] for s, e, _ in reference])
    est_i = np.array([[s, e] for s, e, _ in estimate])
    ref_l = [label for *_, label in reference]
    est_l = [label for *_, label in estimate]
    est_i, est_l = mir_eval.util.adjust_intervals(est_i, est_l, ref_i.min(), ref_i.max(), "N", "N")
    intervals, ref_l, est_l = mir_eval.util.merge_labeled_intervals(ref_i, ref_l, est_i, est_l)
    comparisons = getattr(mir_eval.chord, metric)(ref_l, est_l)
    return mir_eval.chord.weighted_accuracy(comparisons, mir_eval.util.intervals_to_durations(intervals))


# ---------------------------------------------------------------- vocabulary


@pytest.mark.parametrize("name, pc", [("C", 0), ("c#", 1), ("Db", 1), ("E-", 3), ("Eb", 3), ("bb", 10), ("B", 11),
                                      ("Cb", 11), ("Fb", 4), ("E#", 5), ("B#", 0), ("F##", 7)])
def test_pitch_class_spellings(name, pc):
    assert pitch_class(name) == pc


@pytest.mark.parametrize("bad", ["", "H", "C$", "Cmaj", "12"])
def test_pitch_class_rejects_non_notes(bad):
    with pytest.raises(ValueError, match="note name"):
        pitch_class(bad)


def test_btc_labels_follow_the_reference_vocabulary_and_parse_in_mir_eval():
    import mir_eval

    assert len(BTC_LABELS) == 170
    assert BTC_LABELS[0] == "C:min" and BTC_LABELS[1] == "C:maj"
    assert BTC_LABELS[14 * 9 + 6] == "A:min7" and BTC_LABELS[14 * 11 + 11] == "B:hdim7"
    assert BTC_LABELS[168] == "X" and BTC_LABELS[169] == "N"
    for label in BTC_LABELS:
        mir_eval.chord.encode(label)  # raises on invalid Harte syntax


def test_split_label_and_pitch_classes():
    assert split_label("C") == ("C", "maj")
    assert split_label("Bb:7/3") == ("A#", "7")
    assert split_label("D:min(9)") == ("D", "min")
    assert split_label("N") == (None, "N") and split_label("X") == (None, "X")
    assert list(np.flatnonzero(chord_pitch_classes("A:min7"))) == [0, 4, 7, 9]
    assert list(np.flatnonzero(chord_pitch_classes("C:maj/b7"))) == [0, 4, 7, 10]
    assert not chord_pitch_classes("X").any()
    with pytest.raises(ValueError, match="H:maj"):
        split_label("H:maj")


# ---------------------------------------------------------------- key from chords


def test_key_from_chords_simple_cadences():
    major = [(0, 2, "C:maj"), (2, 4, "F:maj"), (4, 6, "G:7"), (6, 8, "C:maj")]
    minor = [(0, 2, "A:min"), (2, 4, "D:min"), (4, 6, "E:maj"), (6, 8, "A:min")]
    tonic, mode, conf = key_from_chords(major)
    assert (tonic, mode) == ("C", "major") and 0.5 < conf <= 1.0
    assert key_from_chords(minor)[:2] == ("A", "minor")
    # Flat keys come back spelled with sharps; bare BTC-style roots are major chords.
    eb = [(0, 1, "Eb"), (1, 2, "Ab"), (2, 3, "Bb:7"), (3, 4, "Eb")]
    assert key_from_chords(eb)[:2] == ("D#", "major")


def test_key_from_chords_without_chords():
    assert key_from_chords([]) == (None, None, 0.0)
    assert key_from_chords([(0, 3, "N"), (3, 4, "X")]) == (None, None, 0.0)


def test_key_from_chords_validates_rows():
    with pytest.raises(ValueError, match=r"chords\[1\]"):
        key_from_chords([(0, 1, "C:maj"), (2, 1, "G:maj")])
    with pytest.raises(ValueError, match="Harte"):
        key_from_chords([(0, 1, "C:nonsense")])


def _music21_key_like_reference(chords):
    """The reference's method with music21: one note (MIDI 48 + pc) per run of consecutive segments holding that
    pitch class, durations in quarter notes at 120 bpm, then ``analyze('key')`` (Aarden-Essen)."""
    music21 = pytest.importorskip("music21")
    s = music21.stream.Stream()
    for p in range(12):
        run_start = None
        for i, (start, end, label) in enumerate(chords):
            on = bool(chord_pitch_classes(label)[p])
            if on and run_start is None:
                run_start = start
            if run_start is not None and (not on or i == len(chords) - 1):
                stop = end if on else start
                n = music21.note.Note(48 + p, quarterLength=2 * (stop - run_start))
                s.insert(2 * run_start, n)
                run_start = None
    k = s.analyze("key")
    return k.tonic.pitchClass, k.mode, k.correlationCoefficient


def test_key_from_chords_matches_music21_aarden_essen():
    rng = np.random.default_rng(3)
    qualities = ["maj", "min", "7", "min7", "maj7", "dim", "sus4", "hdim7", "aug", "maj6"]
    for case in range(25):
        t, chords = 0.0, []
        for _ in range(int(rng.integers(2, 12))):
            d = 0.25 * int(rng.integers(1, 16))  # quarter-second grid: exact in quarter notes at 120 bpm
            label = f"{PITCH_CLASSES[rng.integers(12)]}:{qualities[rng.integers(len(qualities))]}"
            chords.append((t, t + d, label))
            t += d
        ref_pc, ref_mode, ref_r = _music21_key_like_reference(chords)
        tonic, mode, conf = key_from_chords(chords)
        assert (pitch_class(tonic), mode) == (ref_pc, ref_mode), (case, chords)
        assert conf == pytest.approx(max(0.0, ref_r), abs=1e-9)


def test_key_correlations_are_pearson_over_rotated_profiles():
    dist = chord_pitch_distribution([(0, 1, "G:maj"), (1, 2, "D:7")])
    corr = key_correlations(dist)
    assert corr.shape == (2, 12)
    from m2e_plugin.harmony.key import PROFILES

    g_major = np.roll(PROFILES["aarden"][0], 7)
    assert corr[0, 7] == pytest.approx(np.corrcoef(g_major, dist)[0, 1])
    with pytest.raises(ValueError, match="unknown key profile"):
        key_correlations(dist, "nope")


# ---------------------------------------------------------------- Music2Emo tokens


def test_mode_id():
    assert mode_id("major") == 0 and mode_id("Minor") == 1 and mode_id(None) == 0
    with pytest.raises(ValueError, match="dorian"):
        mode_id("dorian")


def test_encode_music2emo_worked_example_in_d_major():
    chords = [(0, 1, "D:maj"), (1, 2, "G"), (2, 3, "A:7"), (3, 4, "B:min"), (4, 5, "N"), (5, 6, "X"),
              (6, 7, "E:minmaj7"), (7, 8, "F#:hdim7/b7")]
    roots, attrs = encode_music2emo(chords, "D", "major")
    assert roots.shape == attrs.shape == (100,) and roots.dtype == attrs.dtype == np.int64
    # D major -> C major: D C, G F, A G, B A, E D, F# E; N and X -> 0; minmaj7 -> min (5); hdim7 10.
    assert list(roots[:8]) == [1, 6, 8, 10, 0, 0, 3, 5]
    assert list(attrs[:8]) == [1, 1, 11, 5, 0, 0, 5, 10]
    assert not roots[8:].any() and not attrs[8:].any()


def test_encode_music2emo_minor_keys_go_to_a_minor_and_flats_work():
    roots, attrs = encode_music2emo([(0, 1, "E:min"), (1, 2, "B:7")], "E", "minor", max_len=4)
    assert list(roots) == [10, 5, 0, 0] and list(attrs) == [5, 11, 0, 0]  # A:min, E:7
    roots, _ = encode_music2emo([(0, 1, "Eb:maj"), (1, 2, "Bb:maj")], "E-", "major", max_len=2)
    assert list(roots) == [1, 8]  # C, G
    roots, _ = encode_music2emo([(0, 1, "Eb:maj")], None, None, max_len=1)
    assert list(roots) == [4]  # no key: no transposition (D# stays D#)


def test_encode_music2emo_truncates_and_normalise_chords_keeps_times():
    chords = [(i, i + 1, "G:maj") for i in range(150)]
    roots, attrs = encode_music2emo(chords, "G", "major")
    assert roots.shape == (100,) and set(roots) == {1} and set(attrs) == {1}
    assert normalise_chords([(0.5, 1.5, "A:min7/b3"), (1.5, 2, "N")], "A", "minor") == [
        (0.5, 1.5, "A:min7"), (1.5, 2.0, "N")]
    with pytest.raises(ValueError, match="max_len"):
        encode_music2emo(chords, "G", "major", max_len=0)


# ---------------------------------------------------------------- offline chord recognition

PROGRESSIONS = [
    [("C:maj", 2.0), ("A:min", 2.0), ("F:maj", 2.0), ("G:7", 2.0), ("C:maj", 2.0)],
    [("E:min", 2.0), ("C:maj", 2.0), ("D:maj", 1.5), ("B:7", 2.5), ("E:min", 2.0)],
    [("F#:maj", 2.0), ("C#:min7", 2.0), ("B:maj7", 2.0), ("G#:min", 2.0)],
]


@pytest.mark.parametrize("progression", PROGRESSIONS, ids=["C", "Em", "F#"])
def test_offline_recognizer_on_synthetic_progressions(progression):
    y, reference = render(progression)
    estimate = recognize_chords(y, SR)
    assert estimate[0][0] == 0.0 and estimate[-1][1] == pytest.approx(y.size / SR)
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(estimate, estimate[1:]))  # contiguous
    assert mir_eval_score(reference, estimate, "root") >= 0.85
    assert mir_eval_score(reference, estimate, "majmin") >= 0.8


def test_offline_recognizer_inputs():
    y, _ = render([("D:maj", 1.0)])
    stereo = np.stack([y, y], axis=1)
    assert recognize_chords(stereo, SR)[0][2].startswith("D")
    assert recognize_chords(y[: SR // 10], SR)[-1][1] == pytest.approx(0.1)  # 0.1 s still yields segments
    assert recognize_chords(np.zeros(SR), SR) == [(0.0, 1.0, "N")]
    y44 = render([("A:min", 1.5)], sr=44100)[0]
    assert recognize_chords(y44, 44100)[0][2] in ("A:min", "A:min7")
    assert all(q in ("maj", "min") for _, _, lab in recognize_chords(y, SR, vocabulary="majmin")
               for q in [split_label(lab)[1]] if lab != "N")


def test_chroma_takes_a_notes_fifth_harmonic_back_out():
    from m2e_plugin.harmony.features import FrontEnd, chroma

    # One C3 with a strong 5th harmonic (E5): that E is not a played note and would make a C minor chord look major.
    t = np.arange(2 * SR) / SR
    f = 440.0 * 2 ** ((48 - 69) / 12)
    y = sum((0.3 / h) * np.sin(2 * np.pi * f * h * t) for h in range(1, 6)).astype(np.float32)
    e = PITCH_CLASSES.index("E")
    plain, energy = chroma(y)
    suppressed, _ = chroma(y, front=FrontEnd(harmonics=(0.0, 0.0, 0.5)))
    assert plain.shape == suppressed.shape and plain.shape[1] == 12 and energy.shape == (plain.shape[0],)
    assert int(np.argmax(plain.mean(axis=0))) == 0  # C
    assert suppressed[:, e].mean() < 0.8 * plain[:, e].mean()
    assert suppressed[:, 0].mean() == pytest.approx(plain[:, 0].mean(), rel=0.02)  # the note itself stays
    # The 3rd harmonic (G4, a twelfth up) is what makes a bright timbre's tonic look like its dominant.
    g = PITCH_CLASSES.index("G")
    no_twelfth, _ = chroma(y, front=FrontEnd(harmonics=(0.0, 0.5, 0.0)))
    assert no_twelfth[:, g].mean() < 0.8 * plain[:, g].mean()


def test_levelled_front_end_ignores_the_recording_gain():
    from m2e_plugin.harmony.features import FrontEnd, fold_chroma, semitone_spectrum

    y, _ = render([("C:maj", 1.0), ("A:min", 1.0)])
    loud, quiet = semitone_spectrum(y), semitone_spectrum(0.05 * y)
    plain = FrontEnd(compression=10.0)
    levelled = FrontEnd(compression=10.0, level=True)
    assert not np.allclose(fold_chroma(loud, plain)[0], fold_chroma(quiet, plain)[0], rtol=1e-2)
    np.testing.assert_allclose(fold_chroma(loud, levelled)[0], fold_chroma(quiet, levelled)[0], rtol=1e-3,
                               atol=1e-4)


def test_key_from_spectrum_is_estimate_keys_core():
    from m2e_plugin.harmony.features import CHROMA_HOP, semitone_spectrum
    from m2e_plugin.harmony.key import PREVIOUS_KEY_SETTINGS, key_from_spectrum, key_input

    y, _ = render([("D:maj", 1.0), ("G:maj", 1.0), ("A:7", 1.0), ("D:maj", 1.5)])
    assert key_from_spectrum(key_input(y)) == estimate_key(y, SR)
    assert estimate_key(y, SR)[:2] == ("D", "major")
    # The previous release's estimator (CQT) is still there for comparison, and agrees here.
    previous = key_from_spectrum(semitone_spectrum(y, hop=CHROMA_HOP), PREVIOUS_KEY_SETTINGS, hop=CHROMA_HOP)
    assert previous[:2] == ("D", "major")


def test_recognize_chords_errors():
    y = np.zeros(100, dtype=np.float32)
    with pytest.raises(ValueError, match="unknown chord method"):
        recognize_chords(y, SR, "chordino")
    with pytest.raises(ValueError, match="needs model"):
        recognize_chords(y, SR, "btc")
    with pytest.raises(ValueError, match="vocabulary"):
        recognize_chords(y + 0.1, SR, vocabulary="jazz")
    with pytest.raises(AudioError, match="NaN"):
        recognize_chords(np.array([0.0, np.nan, 0.1]), SR)
    with pytest.raises(AudioError, match="empty"):
        recognize_chords(np.array([]), SR)
    with pytest.raises(AudioError, match="sample rate"):
        recognize_chords(y, 0)


# ---------------------------------------------------------------- key from audio


@pytest.mark.parametrize("tonic, mode", [("C", "major"), ("G", "major"), ("A#", "major"), ("A", "minor"),
                                         ("F#", "minor")])
def test_estimate_key_on_cadences(tonic, mode):
    t = pitch_class(tonic)
    if mode == "major":  # I IV V7 I vi ii V I
        degrees = [(0, "maj"), (5, "maj"), (7, "7"), (0, "maj"), (9, "min"), (2, "min"), (7, "maj"), (0, "maj")]
    else:  # i iv V7 i VI iv V i
        degrees = [(0, "min"), (5, "min"), (7, "7"), (0, "min"), (8, "maj"), (5, "min"), (7, "maj"), (0, "min")]
    y, _ = render([(f"{PITCH_CLASSES[(t + d) % 12]}:{q}", 1.0) for d, q in degrees])
    est_tonic, est_mode, conf = estimate_key(y, SR)
    assert (est_tonic, est_mode) == (tonic, mode)
    assert 0.0 < conf <= 1.0


# Additive timbres far from the default 1/h: an organ-like flat series, a sung vowel's formant (2nd and 3rd
# harmonics above the note), a hollow odd-harmonic tone and a bright brass-like one.
TIMBRES = {"organ": (1.0, 0.9, 0.8, 0.7, 0.6, 0.5), "formant": (0.3, 1.0, 0.6, 0.2, 0.5, 0.1),
           "hollow": (1.0, 0.05, 0.6, 0.05, 0.4, 0.05), "bright": (0.5, 1.0, 1.0, 0.8, 0.8, 0.6)}


@pytest.mark.parametrize("timbre", TIMBRES)
@pytest.mark.parametrize("tonic, mode", [("A#", "major"), ("E", "minor")])
def test_estimate_key_holds_across_timbres(tonic, mode, timbre):
    t = pitch_class(tonic)
    degrees = ([(0, "maj"), (5, "maj"), (7, "7"), (0, "maj"), (9, "min"), (2, "min"), (7, "maj"), (0, "maj")]
               if mode == "major" else
               [(0, "min"), (5, "min"), (7, "7"), (0, "min"), (8, "maj"), (5, "min"), (7, "maj"), (0, "min")])
    y, _ = render([(f"{PITCH_CLASSES[(t + d) % 12]}:{q}", 1.0) for d, q in degrees], harmonics=TIMBRES[timbre])
    assert estimate_key(y, SR)[:2] == (tonic, mode)


def test_key_cues_name_a_key_the_whole_tracks_chroma_misses():
    """A piece in G major that dwells on its subdominant (C) in the middle: its pitch-class total says C major,
    its opening and its final bass say G major; the shipped estimator weighs both."""
    from dataclasses import replace

    from m2e_plugin.harmony.key import KEY_SETTINGS, best_key, key_from_spectrum, key_input, key_pitch_distribution

    y, _ = render([("G:maj", 2), ("D:7", 1), ("G:maj", 2), ("C:maj", 2), ("A:min", 1), ("C:maj", 2), ("F:maj", 1),
                   ("C:maj", 2), ("D:7", 1), ("G:maj", 3)])
    spectrum = key_input(y)
    plain = replace(KEY_SETTINGS, opening_weight=0.0, ending_weight=0.0, bass_weight=0.0)
    assert key_from_spectrum(spectrum, plain)[:2] == ("C", "major")
    # Without cues the estimator is the profile correlation of the whole track's chroma.
    assert key_from_spectrum(spectrum, plain) == pytest.approx(best_key(key_pitch_distribution(spectrum), "aarden"))
    tonic, mode, confidence = key_from_spectrum(spectrum)
    assert (tonic, mode) == ("G", "major") and 0.0 < confidence <= 1.0
    # The opening alone already says G (its last 6 s - C, D7, G - are ambiguous between C and G).
    opening_only = replace(plain, opening_weight=KEY_SETTINGS.opening_weight)
    assert key_from_spectrum(spectrum, opening_only)[:2] == ("G", "major")


def test_estimate_key_silence_and_bad_input():
    assert estimate_key(np.zeros(SR), SR) == (None, None, 0.0)
    with pytest.raises(AudioError):
        estimate_key(np.full(10, np.inf), SR)


def test_short_input_works_for_chords_and_key():
    y, _ = render([("E:min", 0.2)])
    y = y[: int(0.2 * SR)]
    chords = recognize_chords(y, SR)
    assert chords[0][0] == 0.0 and chords[-1][1] == pytest.approx(0.2)
    tonic, mode, conf = estimate_key(y, SR)
    assert (tonic is None) == (mode is None) and 0.0 <= conf <= 1.0
    # Silence of the same length: only N, no key.
    assert recognize_chords(np.zeros_like(y), SR) == [(0.0, pytest.approx(0.2), "N")]
    assert estimate_key(np.zeros_like(y), SR) == (None, None, 0.0)


def test_every_btc_class_round_trips_through_labels_and_tokens():
    """Exhaustive over the 170 classes: label -> (root, quality) -> Music2Emo token ids, consistent with the index."""
    import mir_eval

    from m2e_plugin.harmony.vocabulary import BTC_LABELS, split_label

    reference_attrs = {"N": 0, "maj": 1, "dim": 2, "sus4": 3, "min7": 4, "min": 5, "sus2": 6, "aug": 7, "dim7": 8,
                       "maj6": 9, "hdim7": 10, "7": 11, "min6": 12, "maj7": 13}
    qualities = ["min", "maj", "dim", "aug", "min6", "maj6", "min7", "minmaj7", "maj7", "7", "dim7", "hdim7", "sus2",
                 "sus4"]
    notes = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    for index, label in enumerate(BTC_LABELS):
        if index >= 168:
            assert label == ("X" if index == 168 else "N")
            roots, attrs = encode_music2emo([(0.0, 1.0, label)], None, None, max_len=1)
            assert (roots[0], attrs[0]) == (0, 0)
            continue
        root, quality = split_label(label)
        assert (root, quality) == (notes[index // 14], qualities[index % 14])
        mir_eval.chord.encode(label)  # every label is valid Harte syntax
        roots, attrs = encode_music2emo([(0.0, 1.0, label)], None, None, max_len=1)
        assert roots[0] == index // 14 + 1
        expected = reference_attrs.get(quality, reference_attrs["min"])  # minmaj7 -> min (documented decision)
        assert attrs[0] == expected


@pytest.mark.parametrize("mode", ["major", "minor"])
def test_every_key_transposes_its_tonic_chord_to_c_major_or_a_minor(mode):
    spellings = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
                 "B#", "C#", "D#", "Fb", "E#", "Gb", "G#", "A#", "Cb"]
    target = "C:maj" if mode == "major" else "A:min"
    quality = "maj" if mode == "major" else "min"
    for tonic in spellings:
        chords = [(0.0, 1.0, f"{tonic}:{quality}"), (1.0, 2.0, "N")]
        (start, end, label), rest = normalise_chords(chords, tonic, mode)[0], normalise_chords(chords, tonic, mode)[1]
        assert label == target, (tonic, mode, label)
        assert (start, end) == (0.0, 1.0) and rest[2] == "N"
        # The dominant lands on G (major) / E (minor) whatever the spelling of the tonic.
        dominant = (pitch_class(tonic) + 7) % 12
        dom_label = normalise_chords([(0, 1, f"{PITCH_CLASSES[dominant]}:7")], tonic, mode)[0][2]
        assert dom_label == ("G:7" if mode == "major" else "E:7")
