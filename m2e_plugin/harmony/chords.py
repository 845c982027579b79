"""Chord recognition: the dispatcher :func:`recognize_chords` and the weight-free ``"offline"`` recogniser.

The offline recogniser needs no model file: tuning-corrected chroma (plus a bass chroma for the root) is matched
against harmonic chord templates and the frame-wise scores are decoded with a Viterbi pass over a sticky
transition model, so chords change only when the evidence outweighs a switching cost. It is the default because
it always works; ``method="btc"`` with :func:`~m2e_plugin.harmony.load_btc` is the reference's recogniser.
"""

from __future__ import annotations

import numpy as np

from m2e_plugin.harmony.features import BTC_SR, CHROMA_HOP, chroma, prepare
from m2e_plugin.harmony.vocabulary import NO_CHORD, PITCH_CLASSES, QUALITY_INTERVALS, frames_to_segments

Chords = list[tuple[float, float, str]]

VOCABULARIES: dict[str, tuple[str, ...]] = {
    "majmin": ("maj", "min"),
    "triads": ("maj", "min", "dim", "aug", "sus2", "sus4"),
    "sevenths": ("maj", "min", "dim", "aug", "sus4", "7", "maj7", "min7", "hdim7", "dim7"),
    "full": tuple(QUALITY_INTERVALS),  # BTC's 14 qualities
}

# Decoder settings, chosen on synthetic renders (benchmarks/bench_harmony.py): emission sharpness, the cost
# of a chord change, the bass-root bonus, the penalty for four-note chords, and the N (no chord) score.
_SHARPNESS = 12.0
_SWITCH_COST = 6.0
_BASS_WEIGHT = 0.25
_TETRAD_PENALTY = 0.04
_NO_CHORD_SCORE = 0.55
_SILENT_FRAME = 1e-3  # frames this far below the loudest one are silence (forced N)
_SILENCE = 1e-4  # peak amplitude of an all-silent signal
_HARMONIC_DECAY = 0.6
_SMOOTH_FRAMES = 5  # ~0.45 s median filter over chroma


def recognize_chords(audio: np.ndarray, sr: int, method: str = "offline", *, model=None,
                     vocabulary: str = "sevenths") -> Chords:
    """Chord segments of an audio signal.

    Parameters
    ----------
    audio : np.ndarray
        Samples, mono or multichannel (channels are averaged), any sample rate.
    sr : int
        Sample rate of ``audio``.
    method : {"offline", "btc"}
        ``"offline"``: the template recogniser (no weights needed). ``"btc"``: the BTC network passed as
        ``model`` (see :func:`~m2e_plugin.harmony.load_btc`), as Music2Emo does.
    model : BTCRecognizer, optional
        Required for ``method="btc"``.
    vocabulary : {"sevenths", "triads", "majmin", "full"}
        Chord qualities the offline recogniser may emit (BTC always uses its 170 classes).

    Returns
    -------
    list of (start_s, end_s, label)
        Contiguous segments from 0 to the end of the audio, Harte labels (``"C:maj"``, ``"A:min7"``, ``"N"``).

    Raises
    ------
    ValueError
        Unknown method or vocabulary, or ``method="btc"`` without ``model``.
    m2e_plugin.audio.AudioError
        Empty audio, NaN/inf samples or an invalid sample rate.
    """
    if method == "btc":
        if model is None:
            raise ValueError("method='btc' needs model=load_btc('btc_model_large_voca.pt')")
        return model.recognize(audio, sr)
    if method != "offline":
        raise ValueError(f"unknown chord method {method!r}; use 'offline' or 'btc'")
    if model is not None:
        raise ValueError("model= is only used with method='btc'")
    return recognize_offline(audio, sr, vocabulary=vocabulary)


def chord_templates(vocabulary: str = "sevenths") -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels, unit-norm harmonic chroma templates ``(K, 12)`` and root pitch classes ``(K,)`` of a vocabulary."""
    try:
        qualities = VOCABULARIES[vocabulary]
    except KeyError:
        raise ValueError(f"unknown chord vocabulary {vocabulary!r}; available: {', '.join(VOCABULARIES)}") from None
    # Each chord note also excites its harmonics 2-4 (octave, fifth above, double octave), weaker and weaker.
    harmonic_offsets = [int(round(12 * np.log2(h))) for h in (1, 2, 3, 4)]
    labels, templates, roots = [], [], []
    for quality in qualities:
        for root in range(12):
            t = np.zeros(12)
            for interval in QUALITY_INTERVALS[quality]:
                for h, offset in enumerate(harmonic_offsets):
                    t[(root + interval + offset) % 12] += _HARMONIC_DECAY ** h
            labels.append(f"{PITCH_CLASSES[root]}:{quality}")
            templates.append(t / np.linalg.norm(t))
            roots.append(root)
    return labels, np.array(templates), np.array(roots)


def recognize_offline(audio: np.ndarray, sr: int, *, vocabulary: str = "sevenths") -> Chords:
    """The template + Viterbi recogniser behind ``recognize_chords(method="offline")``."""
    y = prepare(audio, sr)
    duration = y.size / BTC_SR
    labels, templates, roots = chord_templates(vocabulary)
    if not np.any(np.abs(y) > _SILENCE):
        return [(0.0, duration, NO_CHORD)]
    treble, bass, energy = chroma(y)
    scores = _frame_scores(treble, bass, energy, templates, roots, vocabulary)
    path = _viterbi(_SHARPNESS * scores, _SWITCH_COST)
    labels = labels + [NO_CHORD]
    # Frame i is centred on i * hop; boundaries sit half-way between frame centres.
    hop_s = CHROMA_HOP / BTC_SR
    starts = np.maximum(0.0, (np.arange(path.size) - 0.5) * hop_s)
    segments = frames_to_segments(path, starts, duration, labels)
    return [seg for seg in segments if seg[1] > seg[0]]


def _frame_scores(treble, bass, energy, templates, roots, vocabulary) -> np.ndarray:
    """``(frames, K + 1)`` scores: cosine similarity to each template plus a bass-root bonus; last column = N."""
    from scipy.ndimage import median_filter

    treble = median_filter(treble, size=(_SMOOTH_FRAMES, 1), mode="nearest")
    bass = median_filter(bass, size=(_SMOOTH_FRAMES, 1), mode="nearest")
    norm = np.linalg.norm(treble, axis=1, keepdims=True)
    unit = np.divide(treble, norm, out=np.zeros_like(treble), where=norm > 0)
    score = unit @ templates.T
    bass_total = bass.sum(axis=1, keepdims=True)
    bass_share = np.divide(bass, bass_total, out=np.zeros_like(bass), where=bass_total > 0)
    score += _BASS_WEIGHT * bass_share[:, roots]
    sizes = np.array([len(QUALITY_INTERVALS[q]) for q in VOCABULARIES[vocabulary] for _ in range(12)])
    score -= _TETRAD_PENALTY * (sizes > 3)
    no_chord = np.full((score.shape[0], 1), _NO_CHORD_SCORE)
    silent = energy <= _SILENT_FRAME * max(float(energy.max()), 1e-12)
    score[silent] = -np.inf  # silent frames can only be N
    no_chord[silent] = 1.0
    return np.concatenate([score, no_chord], axis=1)


def _viterbi(log_emission: np.ndarray, switch_cost: float) -> np.ndarray:
    """Most likely state path when staying costs nothing and any change costs ``switch_cost`` (log domain)."""
    n, k = log_emission.shape
    back = np.empty((n, k), dtype=np.int64)
    delta = log_emission[0].copy()
    back[0] = np.arange(k)
    for t in range(1, n):
        best = int(np.argmax(delta))
        switch = delta[best] - switch_cost
        stay = delta >= switch
        back[t] = np.where(stay, np.arange(k), best)
        delta = np.where(stay, delta, switch) + log_emission[t]
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(np.argmax(delta))
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path
