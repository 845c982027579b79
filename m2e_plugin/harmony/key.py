"""Key estimation: from a chord sequence (Music2Emo's method) and from audio (chroma + key profiles).

Both correlate 12-bin pitch-class distributions with the 24 rotations of a major and a minor key profile
(Krumhansl-Schmuckler) and return the key with the highest Pearson correlation, which also serves as confidence
(clipped to 0-1). The chord method uses one distribution; the audio estimator weighs four (the whole track's
chroma, its opening's chroma, the bass of its ending and of the whole track: :class:`KeySettings`), taken from the
note posteriors of a learned transcription network (:func:`key_input`), which hold across timbres better than the
CQT the previous release read. Tonics are
spelled with sharps (``"C#"``, ``"A#"``), modes are ``"major"`` / ``"minor"``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np

from m2e_plugin.harmony.features import BTC_SR, FrontEnd, fold_chroma, prepare
from m2e_plugin.harmony.transcription import GRID_HOP, note_salience
from m2e_plugin.harmony.vocabulary import PITCH_CLASSES, chord_pitch_classes, check_chords

KeyResult = tuple["str | None", "str | None", float]

# Key profiles (weight of each scale degree, tonic first). Aarden-Essen is music21's default `analyze('key')`
# method, which Music2Emo uses; Krumhansl-Kessler and Temperley-Kostka-Payne are the classic alternatives.
PROFILES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "aarden": (
        (17.7661, 0.145624, 14.9265, 0.160186, 19.8049, 11.3587, 0.291248, 22.062, 0.145624, 8.15494, 0.232998,
         4.95122),
        (18.2648, 0.737619, 14.0499, 16.8599, 0.702494, 14.4362, 0.702494, 18.6161, 4.56621, 1.93186, 7.37619,
         1.75623),
    ),
    "krumhansl": (
        (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
        (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17),
    ),
    "temperley": (
        (0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400),
        (0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330),
    ),
}

MODES = ("major", "minor")

_SILENCE = 1e-4  # peak amplitude below which a signal is treated as silence
_SILENT_FRAME = 1e-3  # frames this far below the loudest frame are ignored


def key_correlations(distribution: Sequence[float], profile: str = "aarden") -> np.ndarray:
    """Pearson correlation of a pitch-class distribution with all 24 keys.

    Returns
    -------
    np.ndarray
        ``(2, 12)``: row 0 major, row 1 minor; column = tonic pitch class (0 = C). All zeros when the
        distribution is flat (it carries no key information).
    """
    try:
        major, minor = PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown key profile {profile!r}; available: {', '.join(PROFILES)}") from None
    d = np.asarray(distribution, dtype=np.float64)
    if d.shape != (12,):
        raise ValueError(f"pitch-class distribution must have 12 values, got shape {d.shape}")
    dc = d - d.mean()
    d_norm = np.sqrt((dc ** 2).sum())
    out = np.zeros((2, 12))
    if d_norm == 0:
        return out
    for row, weights in enumerate((major, minor)):
        w = np.asarray(weights) - np.mean(weights)
        # Rotating the profile so that its tonic sits on pitch class t: weight of pc j is w[(j - t) % 12].
        rotated = np.stack([np.roll(w, t) for t in range(12)])
        out[row] = rotated @ dc / (np.sqrt((w ** 2).sum()) * d_norm)
    return out


def best_key(distribution: Sequence[float], profile: str = "aarden") -> KeyResult:
    """The key whose profile correlates best with ``distribution``: ``(tonic, mode, confidence 0-1)``.

    ``(None, None, 0.0)`` when the distribution is empty or flat.
    """
    return _top_key(key_correlations(distribution, profile))


def _top_key(scores: np.ndarray) -> KeyResult:
    """The best of ``(2, 12)`` key scores (rows major/minor), its score clipped to 0-1 as confidence."""
    if not np.any(scores):
        return None, None, 0.0
    mode_idx, tonic = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return PITCH_CLASSES[tonic], MODES[mode_idx], float(np.clip(scores[mode_idx, tonic], 0.0, 1.0))


def chord_pitch_distribution(chords: Iterable[Sequence]) -> np.ndarray:
    """Seconds each pitch class sounds in a chord sequence (N and X contribute nothing)."""
    dist = np.zeros(12)
    cache: dict[str, np.ndarray] = {}
    for start, end, label in check_chords(chords):
        if label not in cache:
            cache[label] = chord_pitch_classes(label)
        dist += (end - start) * cache[label]
    return dist


def key_from_chords(chords: Iterable[Sequence], *, profile: str = "aarden") -> KeyResult:
    """Key of a chord sequence, Music2Emo's way, in memory.

    Music2Emo writes the chord sequence as a MIDI file (one note per pitch class per run of chords containing it)
    and runs music21's ``analyze('key')``: Aarden-Essen profiles correlated with the duration-weighted
    pitch-class distribution. This computes the same distribution directly from the segment durations, without
    temporary files or MIDI quantisation.

    Parameters
    ----------
    chords : iterable of (start_s, end_s, label)
        Harte labels; ``"N"``/``"X"`` segments are ignored.
    profile : {"aarden", "krumhansl", "temperley"}
        Key profile; ``"aarden"`` reproduces Music2Emo.

    Returns
    -------
    (tonic, mode, confidence)
        e.g. ``("D#", "major", 0.87)``; ``(None, None, 0.0)`` when no chord sounds (Music2Emo's ``"None"``).
        Differences from the reference, both deliberate: a sequence of one single segment gets a key (the
        reference's MIDI writer emits no note for it), and tonics are spelled with sharps.
    """
    return best_key(chord_pitch_distribution(chords), profile)


@dataclass(frozen=True)
class KeySettings:
    """The audio key estimator (chosen by cross-validation across renderings: ``benchmarks/tune_harmony.py``).

    The key is the one with the highest weighted sum of key-profile correlations of four pitch-class distributions
    of the sounding frames: the whole track's chroma (``front``, ``profile``; weight 1), the chroma of its opening
    ``opening_seconds`` (``cue_profile``, ``opening_weight``: music states its key first), the lowest sounding
    note of each frame of its last ``ending_seconds`` (``cue_profile``, ``ending_weight``: cadences end on the
    tonic in the bass) and the lowest note of every frame (``profile``, ``bass_weight``). A frame's lowest note is
    its lowest semitone at ``bass_threshold`` or more of the frame's loudest one. Zero weights give the plain
    chroma estimator.
    """

    front: FrontEnd = FrontEnd()
    profile: str = "aarden"
    cue_profile: str = "aarden"
    opening_seconds: float = 6.0
    opening_weight: float = 0.0
    ending_seconds: float = 6.0
    ending_weight: float = 0.0
    bass_weight: float = 0.0
    bass_threshold: float = 0.2


# The previous release's estimator, on the CQT semitone spectrum at hop CHROMA_HOP (features.semitone_spectrum): its
# chroma front end (part of each note's 2nd, 3rd and 5th harmonics taken out, a light compression, the top octaves
# weighted down) and cues were chosen by leave-one-rendering-out cross-validation over six renderings
# (benchmarks/tune_harmony.py), the cues with the mean of two corpora per rendering as objective - music21's
# analysed chorales and madrigals, and 40 VGMIDI pieces - so that a cue that only suits the chorales' cadences is not
# picked. Kept for comparison (benchmarks).
PREVIOUS_KEY_SETTINGS = KeySettings(FrontEnd(harmonics=(0.3, 0.2, 0.05), compression=1.0,
                                             octave_weights=(1.0, 1.0, 1.0, 0.8, 0.5, 0.3)),
                                    "aarden", cue_profile="krumhansl", opening_seconds=6.0, opening_weight=0.5,
                                    ending_seconds=10.0, ending_weight=0.25, bass_weight=0.0, bass_threshold=0.2)
# This release reads the transcription network's note posteriors (key_input) with the same cues: squared (the
# posteriors' ~0.05-0.1 floor where no note sounds would otherwise level the chroma), a log compression, and a frame's
# lowest note taken among notes at 0.8 of its most probable one. Chosen by leave-one-rendering-out cross-validation
# over the six tuning renderings against the previous release's estimator and other transcription front ends
# (benchmarks/study_transcription_harmony.py; figures in the README).
KEY_SETTINGS = KeySettings(FrontEnd(power=2.0, compression=3.0), "aarden", cue_profile="krumhansl",
                           opening_seconds=6.0, opening_weight=0.5, ending_seconds=10.0, ending_weight=0.25,
                           bass_weight=0.0, bass_threshold=0.8)
KEY_HOP = GRID_HOP  # frames of key_input, in samples at 22.05 kHz


def key_input(y: np.ndarray) -> np.ndarray:
    """What the audio key estimator reads from 22.05 kHz mono audio: the transcription network's note salience
    (:func:`~m2e_plugin.harmony.transcription.note_salience`, ``(72, frames)`` C1..B6, frames ``KEY_HOP`` apart)."""
    return note_salience(y)


def _sounding(semitone: np.ndarray) -> np.ndarray:
    s = np.asarray(semitone, dtype=np.float64)
    energy = s.sum(axis=0)
    if s.size == 0 or not np.any(energy > 0):
        return s[:, :0]
    return s[:, energy > _SILENT_FRAME * float(energy.max())]


def key_pitch_distribution(semitone: np.ndarray, settings: KeySettings = KEY_SETTINGS) -> np.ndarray:
    """Pitch-class distribution of a :func:`key_input` (or a CQT semitone spectrum) for key finding: the front
    end's chroma summed over the sounding frames. All zeros when nothing sounds."""
    s = _sounding(semitone)
    if s.shape[1] == 0:
        return np.zeros(12)
    return fold_chroma(s, settings.front)[0].sum(axis=0).astype(np.float64)


def lowest_notes(semitone: np.ndarray, threshold: float) -> np.ndarray:
    """Pitch class of each frame's lowest semitone at ``threshold`` or more of the frame's loudest one."""
    s = np.asarray(semitone, dtype=np.float64)
    return np.argmax(s >= threshold * s.max(axis=0, keepdims=True), axis=0) % 12


def key_cues(semitone: np.ndarray, settings: KeySettings = KEY_SETTINGS, hop: int = KEY_HOP) -> dict:
    """The four pitch-class distributions :class:`KeySettings` weighs (``"chroma"``, ``"opening"``, ``"ending"``,
    ``"bass"``; see there) of a semitone spectrum with frames ``hop`` samples apart; ``{}`` when nothing sounds."""
    s = _sounding(semitone)
    if s.shape[1] == 0:
        return {}
    treble = fold_chroma(s, settings.front)[0].astype(np.float64)
    bass = np.eye(12)[lowest_notes(s, settings.bass_threshold)]
    frames_per_second = BTC_SR / hop
    opening = max(1, int(settings.opening_seconds * frames_per_second))
    ending = max(1, int(settings.ending_seconds * frames_per_second))
    return {"chroma": treble.sum(axis=0), "opening": treble[:opening].sum(axis=0),
            "ending": bass[-ending:].sum(axis=0), "bass": bass.sum(axis=0)}


def weigh_cues(cues: dict, settings: KeySettings = KEY_SETTINGS) -> np.ndarray:
    """``(2, 12)`` key scores (rows major/minor, columns tonic): the settings' weighted mean of the cues' profile
    correlations. All zeros for no cues."""
    if not cues:
        return np.zeros((2, 12))
    weighted = ((cues["chroma"], settings.profile, 1.0), (cues["opening"], settings.cue_profile, settings.opening_weight),
                (cues["ending"], settings.cue_profile, settings.ending_weight),
                (cues["bass"], settings.profile, settings.bass_weight))
    total = sum(w for *_, w in weighted)
    return sum(w * key_correlations(d, p) for d, p, w in weighted if w) / total


def key_scores(semitone: np.ndarray, settings: KeySettings = KEY_SETTINGS, hop: int = KEY_HOP) -> np.ndarray:
    """``(2, 12)`` key scores of a semitone spectrum: :func:`weigh_cues` of :func:`key_cues`."""
    return weigh_cues(key_cues(semitone, settings, hop), settings)


def key_from_spectrum(semitone: np.ndarray, settings: KeySettings = KEY_SETTINGS, hop: int = KEY_HOP) -> KeyResult:
    """Key of a :func:`key_input` (the audio key estimator's core; with ``PREVIOUS_KEY_SETTINGS`` and
    ``hop=CHROMA_HOP``, of a CQT :func:`~m2e_plugin.harmony.features.semitone_spectrum`: the previous release's);
    confidence = the key's score (weighted mean correlation), clipped to 0-1."""
    return _top_key(key_scores(semitone, settings, hop))


def estimate_key(audio: np.ndarray, sr: int, *, profile: str | None = None) -> KeyResult:
    """Key of an audio signal from its note posteriors (:func:`key_input`): the key profiles' correlations with the
    whole track's chroma, its first seconds' chroma and its final bass notes (:data:`KEY_SETTINGS`).

    Parameters
    ----------
    audio : np.ndarray
        Samples, mono or multichannel (channels are averaged).
    sr : int
        Sample rate of ``audio``.
    profile : {"aarden", "temperley", "krumhansl"}, optional
        Key profile correlated with the whole track's chroma and bass; default: :data:`KEY_SETTINGS`'s
        (Aarden-Essen, which scored best on every rendering of `m2e evaluate-harmony --rendering all`).

    Returns
    -------
    (tonic, mode, confidence)
        ``(None, None, 0.0)`` for silence.

    Raises
    ------
    m2e_plugin.audio.AudioError
        Empty audio, NaN/inf samples or an invalid sample rate.
    """
    settings = KEY_SETTINGS if profile is None else replace(KEY_SETTINGS, profile=profile)
    y = prepare(audio, sr)
    if not np.any(np.abs(y) > _SILENCE):
        return None, None, 0.0
    return key_from_spectrum(key_input(y), settings)
