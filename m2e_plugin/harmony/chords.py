"""Chord recognition: the dispatcher :func:`recognize_chords` and the weight-free ``"offline"`` recogniser.

The offline recogniser needs no downloaded model: tuning-corrected CQT chroma and the chroma of a small learned
transcription network's note posteriors (shipped with the package, :mod:`m2e_plugin.harmony.transcription`) are each
matched against major/minor triad templates, with a small prior for chords diatonic in the track's key, and their
scores averaged; the frame-wise scores are decoded with a Viterbi pass over
a sticky transition model, so chords change only when the evidence outweighs a switching cost (a root falling a
fifth, V -> I, costs less); each segment is then relabelled with a richer quality of the same triad (7, maj7, min7,
...) when the vocabulary allows it and its chroma clearly prefers it. It is the default because it always works;
``method="btc"`` with :func:`~m2e_plugin.harmony.load_btc` is the reference's recogniser.
"""

from __future__ import annotations

import numpy as np

from m2e_plugin.harmony.features import BTC_SR, FrontEnd, fold_chroma, prepare, semitone_spectrum
from m2e_plugin.harmony.transcription import default_run, note_salience
from m2e_plugin.harmony.vocabulary import NO_CHORD, PITCH_CLASSES, QUALITY_INTERVALS, frames_to_segments

Chords = list[tuple[float, float, str]]

VOCABULARIES: dict[str, tuple[str, ...]] = {
    "majmin": ("maj", "min"),
    "triads": ("maj", "min", "dim", "aug", "sus2", "sus4"),
    "sevenths": ("maj", "min", "dim", "aug", "sus4", "7", "maj7", "min7", "hdim7", "dim7"),
    "full": tuple(QUALITY_INTERVALS),  # BTC's 14 qualities
}

# Decoder settings, tuned on music21's rendered corpus (`m2e evaluate-harmony`): emission sharpness, the cost of a
# chord change, the prior for chords diatonic in the piece's key, the margin a four-note chord needs over its triad,
# and the N (no chord) score. Plain (harmonic-free) templates and a short median filter scored best there; bonuses
# for a bass note that is the root or any chord tone hurt (inversions and passing bass notes are common).
# Frames are ~46 ms: the reference boundaries are sharp (shifting the estimate by 80 ms costs 2 points of majmin),
# and halving the 93 ms hop of the BTC grid gained ~0.5 point for ~0.05 s per 3-minute track.
_HOP = 1024
# Chroma front end (tuned here too; the madrigals chose it, the held-out chorales gained as much): CQT windows at
# 0.7 of librosa's default length smear chord changes less (the full C1 window is 1.6 s long), a gentler log
# compression, and 3 % of each note's 5th harmonic (its major third two octaves up) taken back out.
_FILTER_SCALE = 0.7
# The top two octaves weighted down (they carry more harmonics than notes): chosen by leave-one-rendering-out
# cross-validation over six renderings (benchmarks/tune_harmony.py), majmin 0.799 -> 0.801 on their mean; levelling
# the gain, spectral whitening and removing 3rd harmonics did not help.
CHORD_FRONT_END = FrontEnd(compression=5.0, harmonics=(0.0, 0.0, 0.03), octave_weights=(1.0, 1.0, 1.0, 1.0, 0.7, 0.5))
# The transcription network's note salience (m2e_plugin.harmony.transcription) as a second chroma: the frame scores are
# the weighted mean of the CQT chroma's and the notes' chroma's (nearly linear: posteriors are already 0-1), with a
# sharper emission for the decoder. Chosen by leave-one-rendering-out cross-validation over the six tuning renderings
# (benchmarks/study_transcription_harmony.py; every fold picked it): majmin 0.801 -> 0.822 on their mean (every
# second piece), better on every rendering; the notes alone (0.81) or the CQT masked by them scored lower.
NOTES_FRONT_END = FrontEnd(power=1.0, compression=0.1)
NOTES_WEIGHT = 0.7
_SHARPNESS = 8.0
PREVIOUS_SHARPNESS = 6.0  # the previous release's (CQT only) emission sharpness, for comparisons
_SWITCH_COST = 7.0
# Functional harmony: a root falling a fifth (V -> I, ii -> V, ...) is the commonest progression, so that change is
# cheaper (+0.3 point of majmin). Other priors (stepwise roots, fewer relative-key moves) did not help.
_FIFTH_BONUS = 2.0
_KEY_PRIOR = 0.02
_TETRAD_MARGIN = 0.03
_NO_CHORD_SCORE = 0.55
_SILENT_FRAME = 1e-3  # frames this far below the loudest one are silence (forced N)
_SILENCE = 1e-4  # peak amplitude of an all-silent signal
_HARMONIC_DECAY = 0.0
_SMOOTH_FRAMES = 3  # ~0.14 s median filter over chroma
# Segments are decoded over major/minor triads, then each may be relabelled as a richer chord of the same triad
# family (when the vocabulary allows it and the segment's chroma prefers it by _TETRAD_MARGIN): deciding dim/aug/sus
# and sevenths frame by frame cost ~8 points of majmin accuracy on the corpus.
_REFINEMENTS = {"maj": ("maj", "7", "maj7", "maj6"), "min": ("min", "min7", "min6", "minmaj7")}
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)  # natural + harmonic minor (raised leading tone)


def recognize_chords(audio: np.ndarray, sr: int, method: str = "offline", *, model=None,
                     vocabulary: str = "sevenths", device: str = "cpu") -> Chords:
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
        Chord qualities the offline recogniser may emit (BTC always uses its 170 classes). It decodes major and
        minor triads and may relabel a segment with a richer chord of the same triad that the vocabulary holds
        (``"sevenths"``: 7, maj7, min7; ``"full"``: also maj6, min6, minmaj7); it never emits dim, aug or sus
        chords, which cost accuracy on real music (see ``m2e evaluate-harmony``).
    device : str
        Torch device of the offline recogniser's transcription network (BTC runs where ``model`` was loaded).

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
    return recognize_offline(audio, sr, vocabulary=vocabulary, device=device)


def chord_templates(vocabulary: str = "sevenths") -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels, unit-norm chroma templates ``(K, 12)`` and root pitch classes ``(K,)`` of a vocabulary (with
    ``_HARMONIC_DECAY > 0`` the templates also count each note's harmonics 2-4)."""
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


def recognize_offline(audio: np.ndarray, sr: int, *, vocabulary: str = "sevenths", device: str = "cpu") -> Chords:
    """The template + Viterbi recogniser behind ``recognize_chords(method="offline")``."""
    if vocabulary not in VOCABULARIES:
        raise ValueError(f"unknown chord vocabulary {vocabulary!r}; available: {', '.join(VOCABULARIES)}")
    y = prepare(audio, sr)
    duration = y.size / BTC_SR
    if not np.any(np.abs(y) > _SILENCE):
        return [(0.0, duration, NO_CHORD)]
    notes = note_salience(y, default_run(device))
    return decode_spectrum(chord_spectrum(y), duration, vocabulary=vocabulary, notes=notes)


def chord_spectrum(y: np.ndarray) -> np.ndarray:
    """The recogniser's semitone spectrum of 22.05 kHz mono audio (its hop and CQT window length)."""
    return semitone_spectrum(y, hop=_HOP, filter_scale=_FILTER_SCALE)


def decode_spectrum(semitone: np.ndarray, duration: float, *, vocabulary: str = "sevenths",
                    front: FrontEnd = CHORD_FRONT_END, notes: np.ndarray | None = None,
                    notes_front: FrontEnd | None = None, notes_weight: float | None = None,
                    sharpness: float | None = None) -> Chords:
    """Chord segments from the recogniser's :func:`chord_spectrum` of ``duration`` seconds of audio and, when
    given, its :func:`~m2e_plugin.harmony.transcription.note_salience` (same frames): each frame's template scores
    are then the mean of the two chromas' scores, the notes' weighted ``notes_weight`` (default
    :data:`NOTES_WEIGHT`, their front end :data:`NOTES_FRONT_END`). Without ``notes`` and with
    ``sharpness=PREVIOUS_SHARPNESS`` it is the previous release's CQT-only recogniser."""
    notes_front = NOTES_FRONT_END if notes_front is None else notes_front
    notes_weight = NOTES_WEIGHT if notes_weight is None else notes_weight
    treble, energy = fold_chroma(semitone, front)
    labels, templates, roots = chord_templates("majmin")
    scores = _frame_scores(treble, energy, templates, labels)
    if notes is not None and notes_weight:
        if notes.shape[1] != treble.shape[0]:
            raise ValueError(f"note salience has {notes.shape[1]} frames, the spectrum {treble.shape[0]}")
        note_chroma = fold_chroma(notes, notes_front)[0]
        scores = (1 - notes_weight) * scores + notes_weight * _frame_scores(note_chroma, energy, templates, labels)
    path = _viterbi((_SHARPNESS if sharpness is None else sharpness) * scores, _transitions(roots))
    labels = labels + [NO_CHORD]
    # Frame i is centred on i * hop; boundaries sit half-way between frame centres.
    hop_s = _HOP / BTC_SR
    starts = np.maximum(0.0, (np.arange(path.size) - 0.5) * hop_s)
    segments = [seg for seg in frames_to_segments(path, starts, duration, labels) if seg[1] > seg[0]]
    return _refine(segments, treble, vocabulary)


def _chord_masks(labels) -> np.ndarray:
    masks = np.zeros((len(labels), 12))
    for i, label in enumerate(labels):
        root, quality = label.split(":")
        masks[i, [(PITCH_CLASSES.index(root) + iv) % 12 for iv in QUALITY_INTERVALS[quality]]] = 1.0
    return masks


def _frame_scores(treble, energy, templates, labels) -> np.ndarray:
    """``(frames, K + 1)`` scores: cosine similarity to each template plus a small prior for chords diatonic in the
    track's key; the last column is N."""
    from scipy.ndimage import median_filter

    from m2e_plugin.harmony.key import best_key

    treble = median_filter(treble, size=(_SMOOTH_FRAMES, 1), mode="nearest")
    norm = np.linalg.norm(treble, axis=1, keepdims=True)
    unit = np.divide(treble, norm, out=np.zeros_like(treble), where=norm > 0)
    score = unit @ templates.T
    masks = _chord_masks(labels)
    silent = energy <= _SILENT_FRAME * max(float(energy.max()), 1e-12)
    if (~silent).any():
        tonic, mode, _ = best_key(treble[~silent].sum(axis=0), "aarden")
        if tonic is not None:
            t = PITCH_CLASSES.index(tonic)
            scale = np.zeros(12)
            scale[[(t + d) % 12 for d in (_MAJOR_SCALE if mode == "major" else _MINOR_SCALE)]] = 1.0
            diatonic = (masks @ scale) == masks.sum(axis=1)
            score += _KEY_PRIOR * diatonic
    no_chord = np.full((score.shape[0], 1), _NO_CHORD_SCORE)
    score[silent] = -np.inf  # silent frames can only be N
    no_chord[silent] = 1.0
    return np.concatenate([score, no_chord], axis=1)


def _refine(segments: Chords, treble: np.ndarray, vocabulary: str) -> Chords:
    """Relabel each maj/min segment as the richest chord of its family in ``vocabulary`` that its mean chroma
    prefers by more than ``_TETRAD_MARGIN`` (cosine similarity); the root and triad never change."""
    allowed = set(VOCABULARIES[vocabulary])
    if allowed <= {"maj", "min"}:
        return segments
    hop_s = _HOP / BTC_SR
    out = []
    for start, end, label in segments:
        if label == NO_CHORD:
            out.append((start, end, label))
            continue
        root, quality = label.split(":")
        a = int(np.clip(round(start / hop_s + 0.5), 0, treble.shape[0] - 1))
        b = int(np.clip(round(end / hop_s + 0.5), a + 1, treble.shape[0]))
        mean = treble[a:b].mean(axis=0)
        n = np.linalg.norm(mean)
        if n == 0:
            out.append((start, end, label))
            continue
        candidates = [q for q in _REFINEMENTS[quality] if q in allowed or q == quality]
        masks = _chord_masks([f"{root}:{q}" for q in candidates])
        cos = masks @ (mean / n) / np.linalg.norm(masks, axis=1)
        best = int(np.argmax(cos))
        if best != 0 and cos[best] - cos[0] > _TETRAD_MARGIN:
            label = f"{root}:{candidates[best]}"
        out.append((start, end, label))
    return out


def _transitions(roots: np.ndarray) -> np.ndarray:
    """``(K + 1, K + 1)`` log transition weights (from row to column; the last state is N): staying costs nothing,
    a change costs ``_SWITCH_COST``, less ``_FIFTH_BONUS`` when the root falls a fifth."""
    k = roots.size
    trans = np.full((k + 1, k + 1), -_SWITCH_COST)
    falls_fifth = (roots[None, :] - roots[:, None]) % 12 == 5
    trans[:k, :k] += _FIFTH_BONUS * falls_fifth
    np.fill_diagonal(trans, 0.0)
    return trans


def _viterbi(log_emission: np.ndarray, log_transition: np.ndarray) -> np.ndarray:
    """Most likely state path under ``(frames, K)`` log emissions and a ``(K, K)`` log transition matrix."""
    n, k = log_emission.shape
    back = np.empty((n, k), dtype=np.int64)
    delta = log_emission[0].copy()
    back[0] = np.arange(k)
    cols = np.arange(k)
    for t in range(1, n):
        cand = delta[:, None] + log_transition
        best = np.argmax(cand, axis=0)
        back[t] = best
        delta = cand[best, cols] + log_emission[t]
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(np.argmax(delta))
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path
