"""Audio front ends for the chord recognisers and the key estimator.

* :func:`btc_cqt` reproduces the BTC / Music2Emo feature exactly: 22.05 kHz mono, a constant-Q transform computed
  per 10 s chunk (144 bins, 24 per octave from C1, hop 2048) and concatenated, then ``log(|CQT| + 1e-6)``. Each
  full chunk gives 108 frames, so a frame stands for 10/108 s (the chunking makes that exact on average).
* :func:`chroma` is a tuning-corrected 12-bin chroma for the template recogniser and the audio key estimator.
"""

from __future__ import annotations

import warnings

import numpy as np

from m2e_plugin.audio import AudioError, check_samples, resample, to_mono

BTC_SR = 22050
BTC_CHUNK_SECONDS = 10.0
BTC_HOP = 2048
BTC_BINS = 144
BTC_BINS_PER_OCTAVE = 24
BTC_FRAMES_PER_CHUNK = 108
BTC_FRAME_SECONDS = BTC_CHUNK_SECONDS / BTC_FRAMES_PER_CHUNK

CHROMA_HOP = 2048  # at BTC_SR: ~93 ms frames, the same grid as BTC
_CHROMA_BPO = 36  # 3 bins per semitone, so tuning can be estimated and folded out
_CHROMA_OCTAVES = 6  # C1 .. B6
_FIFTH_HARMONIC_OFFSET = 28  # semitones from a note to its 5th harmonic (two octaves and a major third)


def prepare(audio: np.ndarray, sr: int, target_sr: int = BTC_SR, source: str = "<array>") -> np.ndarray:
    """Validate, mix to mono and resample audio; raises :class:`m2e_plugin.audio.AudioError` for bad input."""
    if sr is None or int(sr) <= 0:
        raise AudioError(source, f"invalid sample rate {sr!r}")
    x = check_samples(to_mono(np.asarray(audio)), source)
    return resample(x, int(sr), target_sr)


def btc_cqt(y: np.ndarray) -> np.ndarray:
    """BTC input features of 22.05 kHz mono audio: ``(frames, 144)`` float32 log-magnitude CQT.

    Computed chunk by chunk (10 s each, the remainder on its own) exactly as the reference does, so the frame
    count is ``108 * full_chunks + frames(remainder)``.
    """
    import librosa

    chunk = int(BTC_SR * BTC_CHUNK_SECONDS)
    y = np.asarray(y, dtype=np.float32)
    parts = []
    start = 0
    # Full chunks while strictly more than one chunk is left; the rest (1 sample .. 10 s) is computed on its own.
    while y.size > start + chunk:
        parts.append(_cqt(librosa, y[start:start + chunk]))
        start += chunk
    parts.append(_cqt(librosa, y[start:]))
    spec = np.concatenate(parts, axis=1)
    return np.log(np.abs(spec) + 1e-6).T.astype(np.float32)


def _cqt(librosa, y: np.ndarray) -> np.ndarray:
    if y.size < 32:
        # librosa refuses a 1-sample signal (the reference crashes on such a tail); 32 zero-padded samples give
        # the same single frame that any tail shorter than one hop gives.
        y = np.pad(y, (0, 32 - y.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_fft too large" for short chunks: harmless, the bins are still valid
        return librosa.cqt(y, sr=BTC_SR, n_bins=BTC_BINS, bins_per_octave=BTC_BINS_PER_OCTAVE,
                           hop_length=BTC_HOP, tuning=0.0)


def semitone_spectrum(y: np.ndarray, *, hop: int = CHROMA_HOP, filter_scale: float = 1.0) -> np.ndarray:
    """Tuning-corrected semitone magnitudes of 22.05 kHz mono audio: ``(72, frames)`` over C1..B6.

    A 3-bins-per-semitone CQT, tuned to the track's estimated tuning, each semitone the sum of its centre bin and
    half of its two neighbours.

    Parameters
    ----------
    hop : int
        Hop in samples at 22.05 kHz.
    filter_scale : float
        CQT window length relative to librosa's default (shorter windows blur changes less, resolve bass less).
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.size < hop:
        y = np.pad(y, (0, hop - y.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuning = float(librosa.estimate_tuning(y=y, sr=BTC_SR, bins_per_octave=12)) if np.any(y) else 0.0
        if not np.isfinite(tuning):
            tuning = 0.0
        mag = np.abs(librosa.cqt(y, sr=BTC_SR, hop_length=hop, n_bins=_CHROMA_BPO * _CHROMA_OCTAVES,
                                 bins_per_octave=_CHROMA_BPO, tuning=tuning, filter_scale=filter_scale))
    # Bin 0 is the (tuned) C1 itself, so semitone s owns bins 3s-1, 3s, 3s+1: shift by one zero row and group in
    # threes.
    weights = np.array([0.5, 1.0, 0.5])
    padded = np.concatenate([np.zeros((1, mag.shape[1])), mag], axis=0)[: _CHROMA_BPO * _CHROMA_OCTAVES]
    semis = padded.reshape(_CHROMA_OCTAVES * 12, 3, -1)
    return np.tensordot(weights, semis, axes=([0], [1])).astype(np.float32)


def fold_chroma(semitone: np.ndarray, *, compression: float = 10.0,
                fifth_harmonic: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Chroma from a :func:`semitone_spectrum`.

    Parameters
    ----------
    compression : float
        ``log1p(compression * x)`` of the summed magnitudes.
    fifth_harmonic : float
        Share of each semitone's magnitude removed two octaves and a major third above it (its 5th harmonic).

    Returns
    -------
    treble : np.ndarray
        ``(frames, 12)`` non-negative chroma (pitch class 0 = C), compressed with ``log1p``.
    energy : np.ndarray
        ``(frames,)`` total magnitude per frame before compression (silence detection).
    """
    semitone = np.asarray(semitone, dtype=np.float64)
    # The 5th harmonic of a note sounds its major third two octaves up, which makes minor chords look major.
    if fifth_harmonic:
        semitone = semitone.copy()
        semitone[_FIFTH_HARMONIC_OFFSET:] = np.maximum(
            semitone[_FIFTH_HARMONIC_OFFSET:] - fifth_harmonic * semitone[:-_FIFTH_HARMONIC_OFFSET], 0.0)
    energy = semitone.sum(axis=0)
    treble = np.log1p(semitone.reshape(_CHROMA_OCTAVES, 12, -1).sum(axis=0) * compression).T
    return treble.astype(np.float32), energy.astype(np.float32)


def chroma(y: np.ndarray, *, hop: int = CHROMA_HOP, filter_scale: float = 1.0, compression: float = 10.0,
           fifth_harmonic: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Tuning-corrected chroma of 22.05 kHz mono audio: :func:`fold_chroma` of :func:`semitone_spectrum`."""
    return fold_chroma(semitone_spectrum(y, hop=hop, filter_scale=filter_scale), compression=compression,
                       fifth_harmonic=fifth_harmonic)


def frame_times(n_frames: int, hop: int = CHROMA_HOP, sr: int = BTC_SR) -> np.ndarray:
    """Start time (s) of each analysis frame."""
    return np.arange(n_frames) * (hop / sr)
