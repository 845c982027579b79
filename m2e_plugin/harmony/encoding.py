"""Music2Emo's chord/key tokens (reference section 2.4): what the multitask head's chord transformer reads.

Chords are transposed so that a major key's tonic becomes C and a minor key's tonic becomes A, then each chord
*segment* becomes one (root id, quality id) token, durations ignored, truncated or right-padded with 0 to 100.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from m2e_plugin.harmony.vocabulary import NO_CHORD, PITCH_CLASSES, UNKNOWN_CHORD, check_chords, pitch_class, split_label

# Music2Emo's chord_root.json and chord_attr.json.
ROOT_IDS: dict[str, int] = {"N": 0, **{name: i + 1 for i, name in enumerate(PITCH_CLASSES)}}
ATTR_IDS: dict[str, int] = {"N": 0, "maj": 1, "dim": 2, "sus4": 3, "min7": 4, "min": 5, "sus2": 6, "aug": 7,
                            "dim7": 8, "maj6": 9, "hdim7": 10, "7": 11, "min6": 12, "maj7": 13}
MODE_IDS: dict[str, int] = {"major": 0, "minor": 1}
MAX_LEN = 100


def mode_id(mode: str | None) -> int:
    """Music2Emo's key token: 0 for major, 1 for minor. ``None`` (no key found) counts as major, as in training.

    Raises
    ------
    ValueError
        For any other mode string.
    """
    if mode is None:
        return 0
    try:
        return MODE_IDS[str(mode).strip().lower()]
    except KeyError:
        raise ValueError(f"mode must be 'major' or 'minor' (or None), got {mode!r}") from None


def key_shift(tonic: str | None, mode: str | None) -> int:
    """Semitones to subtract from every root so the key becomes C major / A minor (0 when there is no key)."""
    if tonic is None:
        return 0
    pc = pitch_class(tonic)
    return (pc - 9) % 12 if mode_id(mode) == 1 else pc


def normalise_chords(chords: Iterable[Sequence], tonic: str | None, mode: str | None
                     ) -> list[tuple[float, float, str]]:
    """Transpose a chord sequence to C major / A minor (Music2Emo's ``chord/lab3``). N and X are kept.

    Labels come back as ``root:quality`` with sharps (bass notes are dropped, as the tokens ignore them).
    """
    shift = key_shift(tonic, mode)
    out = []
    for start, end, label in check_chords(chords):
        root, quality = split_label(label)
        if root is None:
            out.append((start, end, quality))
        else:
            out.append((start, end, f"{PITCH_CLASSES[(pitch_class(root) - shift) % 12]}:{quality}"))
    return out


def encode_music2emo(chords: Iterable[Sequence], tonic: str | None, mode: str | None,
                     max_len: int = MAX_LEN) -> tuple[np.ndarray, np.ndarray]:
    """Music2Emo chord tokens of a chord sequence in a key.

    Parameters
    ----------
    chords : iterable of (start_s, end_s, label)
        Harte labels (``"C"`` and ``"C:maj"`` alike); one token per segment, in order.
    tonic, mode : str or None
        The key (e.g. ``"Eb"``, ``"minor"``), as :func:`~m2e_plugin.harmony.key_from_chords` returns it;
        ``tonic=None`` means no transposition.
    max_len : int
        Token count; longer sequences are truncated, shorter ones right-padded with 0 (the N id).

    Returns
    -------
    (root_ids, attr_ids)
        int64 arrays of shape ``(max_len,)``. Roots: N 0, C 1 ... B 12; ``X`` counts as N. Qualities follow
        Music2Emo's ``chord_attr.json``; a quality outside it (``minmaj7``, which crashes the reference, or
        extended chords such as ``9``) takes the id of the vocabulary quality sharing the most notes with it
        (``minmaj7`` -> ``min``).
    """
    if int(max_len) < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    max_len = int(max_len)
    roots = np.zeros(max_len, dtype=np.int64)
    attrs = np.zeros(max_len, dtype=np.int64)
    for i, (_, _, label) in enumerate(normalise_chords(chords, tonic, mode)[:max_len]):
        if label in (NO_CHORD, UNKNOWN_CHORD):
            continue  # X is treated as N (reference issue #5): both ids stay 0
        root, quality = split_label(label)
        roots[i] = ROOT_IDS[root]
        attrs[i] = attr_id(quality)
    return roots, attrs


@lru_cache(maxsize=None)
def attr_id(quality: str) -> int:
    """Music2Emo quality id of a Harte quality (nearest vocabulary quality for those outside it)."""
    if quality in ATTR_IDS:
        return ATTR_IDS[quality]
    import mir_eval

    try:
        target = set(np.flatnonzero(mir_eval.chord.encode(f"C:{quality}")[1]))
    except mir_eval.chord.InvalidChordException:
        raise ValueError(f"unknown chord quality {quality!r}") from None
    best, best_score = "maj", -1.0
    for name in ATTR_IDS:  # dict order = preference on ties (maj first)
        if name == "N":
            continue
        notes = set(np.flatnonzero(mir_eval.chord.encode(f"C:{name}")[1]))
        score = len(target & notes) / len(target | notes)
        if score > best_score:
            best, best_score = name, score
    return ATTR_IDS[best]
