"""Audio front ends for the chord recognisers and the key estimator.

* :func:`btc_cqt` reproduces the BTC / Music2Emo feature exactly: 22.05 kHz mono, a constant-Q transform computed
  per 10 s chunk (144 bins, 24 per octave from C1, hop 2048) and concatenated, then ``log(|CQT| + 1e-6)``. Each
  full chunk gives 108 frames, so a frame stands for 10/108 s (the chunking makes that exact on average).
* :func:`semitone_spectrum` (tuning-corrected CQT magnitudes per semitone) and :func:`fold_chroma` (a
  :class:`FrontEnd`: levelling, whitening, harmonic removal, compression) give the 12-bin chroma of the template
  recogniser and the audio key estimator.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

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


@dataclass(frozen=True)
class FrontEnd:
    """How a semitone spectrum becomes chroma (the chord recogniser and the key estimator each have their own,
    chosen by cross-validation across renderings: ``benchmarks/tune_harmony.py``).

    level : bool
        Scale the track so that its loud frames (95th percentile of frame energy) sit at one level before the log
        compression, so the compression does not depend on the recording's gain.
    whiten : bool
        Divide by the track's long-term spectral envelope (its long-term spectrum averaged over the octave around
        each semitone, so pitch-class neutral): removes the instrument's spectral tilt.
    harmonics : tuple of float
        Share of each semitone's magnitude removed at its 2nd, 3rd and 5th harmonics (octave, twelfth, and the
        major third two octaves up, which makes minor chords look major).
    compression : float
        ``log1p(compression * x)`` of each pitch class summed over octaves, or of each semitone before the octaves
        are summed when ``compress_octaves`` (a loud register then outweighs the others less).
    octave_weights : tuple of float, optional
        Weight of each of the six octaves C1..B6 before they are summed (e.g. a bass emphasis).
    power : float
        Each value raised to this power first: on note posteriors
        (:func:`~m2e_plugin.harmony.transcription.note_salience`), 2 keeps the network's ~0.05-0.1 floor where no
        note sounds from levelling the chroma.
    """

    level: bool = False
    whiten: bool = False
    harmonics: tuple = (0.0, 0.0, 0.0)
    compression: float = 10.0
    compress_octaves: bool = False
    octave_weights: tuple | None = None
    power: float = 1.0


_HARMONIC_OFFSETS = (12, 19, 28)  # semitones from a note to its 2nd, 3rd and 5th harmonics
_LEVEL = 50.0  # loud-frame energy after levelling (the unlevelled magnitudes' range on a typical render)


def fold_chroma(semitone: np.ndarray, front: FrontEnd = FrontEnd()) -> tuple[np.ndarray, np.ndarray]:
    """Chroma from a :func:`semitone_spectrum` through a :class:`FrontEnd`.

    Returns
    -------
    treble : np.ndarray
        ``(frames, 12)`` non-negative chroma (pitch class 0 = C), compressed with ``log1p``.
    energy : np.ndarray
        ``(frames,)`` total magnitude per frame before compression (silence detection, relative to its maximum).
    """
    s = np.asarray(semitone, dtype=np.float64)
    if front.power != 1.0:
        s = s ** front.power
    energy = s.sum(axis=0)
    if front.level and s.size:
        s = s * (_LEVEL / max(float(np.percentile(energy, 95)), 1e-12))
    if front.whiten and s.size:
        long_term = s.mean(axis=1)
        envelope = np.convolve(np.pad(long_term, 6, mode="edge"), np.ones(12) / 12, mode="same")[6:-6]
        s = s / np.maximum(envelope, 1e-12)[:, None] * max(float(long_term.mean()), 1e-12)
    for offset, share in zip(_HARMONIC_OFFSETS, front.harmonics):
        if share:
            s = s.copy()
            s[offset:] = np.maximum(s[offset:] - share * s[:-offset], 0.0)
    octaves = s.reshape(_CHROMA_OCTAVES, 12, -1)
    if front.compress_octaves:
        octaves = np.log1p(front.compression * octaves)
    if front.octave_weights is not None:
        octaves = octaves * np.asarray(front.octave_weights, dtype=np.float64)[:, None, None]
    treble = octaves.sum(axis=0)
    if not front.compress_octaves:
        treble = np.log1p(front.compression * treble)
    return treble.T.astype(np.float32), energy.astype(np.float32)


def chroma(y: np.ndarray, *, hop: int = CHROMA_HOP, filter_scale: float = 1.0,
           front: FrontEnd = FrontEnd()) -> tuple[np.ndarray, np.ndarray]:
    """Tuning-corrected chroma of 22.05 kHz mono audio: :func:`fold_chroma` of :func:`semitone_spectrum`."""
    return fold_chroma(semitone_spectrum(y, hop=hop, filter_scale=filter_scale), front)


def frame_times(n_frames: int, hop: int = CHROMA_HOP, sr: int = BTC_SR) -> np.ndarray:
    """Start time (s) of each analysis frame."""
    return np.arange(n_frames) * (hop / sr)
