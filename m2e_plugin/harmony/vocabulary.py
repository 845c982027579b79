"""Chord and key vocabulary shared by the recognisers, the key estimators and the Music2Emo encoder.

Labels follow Harte syntax as ``mir_eval.chord`` reads it: ``"C:maj"``, ``"A:min7"``, ``"F#:hdim7"``, ``"N"`` (no
chord) and ``"X"`` (unknown). Roots are spelled with sharps (``C C# D ... B``), the spelling BTC and Music2Emo use.
A chord sequence is a list of ``(start_s, end_s, label)`` tuples.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

PITCH_CLASSES: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

_NATURALS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

# BTC's large-vocabulary quality order: class index = 14 * root + quality index; 168 = X, 169 = N.
BTC_QUALITIES: tuple[str, ...] = ("min", "maj", "dim", "aug", "min6", "maj6", "min7", "minmaj7", "maj7", "7",
                                  "dim7", "hdim7", "sus2", "sus4")
BTC_NUM_CLASSES = 170

# Intervals (semitones above the root) of every quality the recognisers emit.
QUALITY_INTERVALS: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "aug": (0, 4, 8),
    "sus2": (0, 2, 7), "sus4": (0, 5, 7),
    "maj6": (0, 4, 7, 9), "min6": (0, 3, 7, 9),
    "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10), "minmaj7": (0, 3, 7, 11),
    "dim7": (0, 3, 6, 9), "hdim7": (0, 3, 6, 10),
}

NO_CHORD = "N"
UNKNOWN_CHORD = "X"


def pitch_class(name: str) -> int:
    """Pitch class (0 = C) of a note name: sharps, flats (``Bb``, ``Eb``), music21's ``-`` flats, any case.

    Raises
    ------
    ValueError
        For anything that is not a note name.
    """
    # Any number of sharps/flats is accepted, so Cb, E#, B# (missing from Music2Emo's own table) work too.
    text = str(name).strip().replace("-", "b").replace("\u266d", "b").replace("\u266f", "#")
    if not text or text[0].upper() not in _NATURALS or set(text[1:]) - {"#", "b"}:
        raise ValueError(f"not a note name: {name!r}")
    return (_NATURALS[text[0].upper()] + text.count("#") - text[1:].count("b")) % 12


def sharp_name(name: str) -> str:
    """Spell a note name with sharps: ``"Eb"`` -> ``"D#"``, ``"e-"`` -> ``"D#"``, ``"Cb"`` -> ``"B"``."""
    return PITCH_CLASSES[pitch_class(name)]


def btc_label(index: int) -> str:
    """Harte label of a BTC large-vocabulary class index (0-169); major is written ``"C:maj"``, not bare ``"C"``."""
    index = int(index)
    if index == 169:
        return NO_CHORD
    if index == 168:
        return UNKNOWN_CHORD
    if not 0 <= index < 168:
        raise ValueError(f"BTC class index must be in 0..169, got {index}")
    return f"{PITCH_CLASSES[index // 14]}:{BTC_QUALITIES[index % 14]}"


BTC_LABELS: tuple[str, ...] = tuple(btc_label(i) for i in range(BTC_NUM_CLASSES))


def split_label(label: str) -> tuple[str | None, str]:
    """Split a Harte label into ``(root spelled with sharps, quality)``, dropping any bass note.

    ``"C"`` -> ``("C", "maj")`` (a bare root means major, as in BTC's output), ``"Bb:7/3"`` -> ``("A#", "7")``,
    ``"N"`` -> ``(None, "N")``, ``"X"`` -> ``(None, "X")``. Extended qualities such as ``"min(9)"`` are returned
    as written (their base, before the parenthesis, is kept: ``"min"``).

    Raises
    ------
    ValueError
        When the root is not a note name.
    """
    text = str(label).strip()
    if text in (NO_CHORD, UNKNOWN_CHORD):
        return None, text
    body = text.split("/", 1)[0]
    root, _, quality = body.partition(":")
    if "(" in root:  # "C(9)" style: a root with extensions and no shorthand means major
        root, quality = root.split("(", 1)[0], "maj"
    quality = quality.split("(", 1)[0] if quality else "maj"
    try:
        return sharp_name(root), quality or "maj"
    except ValueError:
        raise ValueError(f"chord label {label!r}: root {root!r} is not a note name") from None


def chord_pitch_classes(label: str) -> np.ndarray:
    """Absolute pitch-class bitmap (12,) of a Harte label, via ``mir_eval.chord``. N/X -> zeros."""
    import mir_eval

    text = str(label).strip()
    if text in (NO_CHORD, UNKNOWN_CHORD):
        return np.zeros(12, dtype=np.int64)
    try:
        root, bitmap, _ = mir_eval.chord.encode(text)
    except mir_eval.chord.InvalidChordException as exc:
        raise ValueError(f"chord label {label!r} is not valid Harte syntax: {exc}") from None
    # mir_eval's bitmap already holds the bass note of an inversion ("C:maj/b7" includes Bb).
    return mir_eval.chord.rotate_bitmap_to_root(bitmap, root).astype(np.int64)


def check_chords(chords: Iterable[Sequence], source: str = "chords") -> list[tuple[float, float, str]]:
    """Validate a chord sequence and return it as a list of ``(float, float, str)``.

    Raises
    ------
    ValueError
        Naming the first bad row: not a triple, a non-finite or negative time, or ``end < start``.
    """
    out = []
    for i, row in enumerate(chords):
        try:
            start, end, label = row
        except (TypeError, ValueError):
            raise ValueError(f"{source}[{i}]: expected (start_s, end_s, label), got {row!r}") from None
        start, end = float(start), float(end)
        if not (np.isfinite(start) and np.isfinite(end)) or start < 0 or end < start:
            raise ValueError(f"{source}[{i}]: bad interval ({start}, {end}) for {label!r}")
        out.append((start, end, str(label)))
    return out


def frames_to_segments(frame_labels: Sequence[int], frame_times: Sequence[float], end_time: float,
                       labels: Sequence[str]) -> list[tuple[float, float, str]]:
    """Run-length merge per-frame class indices into ``(start, end, label)`` segments.

    ``frame_times[i]`` is where frame ``i`` starts; the last segment ends at ``end_time``.
    """
    segments: list[tuple[float, float, str]] = []
    n = len(frame_labels)
    if n == 0:
        return segments
    start = 0
    for i in range(1, n + 1):
        if i == n or frame_labels[i] != frame_labels[start]:
            stop = float(frame_times[i]) if i < n else float(end_time)
            segments.append((float(frame_times[start]), stop, labels[int(frame_labels[start])]))
            start = i
    return segments
