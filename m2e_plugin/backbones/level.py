"""Level normalisation shared by the lite backbones, so that an answer does not move with the volume knob.

API
---
``measure_level(y, sr) -> Level``
    ``Level(dbfs, silent)``: the *gated level* of mono audio ``y`` (1-D float array, full scale = 1.0) in dBFS RMS,
    without its DC offset and sub-20 Hz content, and whether it counts as silence. ``dbfs`` is ``-inf`` for constant
    or empty input (or when more than 95 % of it is digital zero).
``normalise_level(y, sr, target_dbfs=TARGET_DBFS) -> Normalised``
    ``Normalised(audio, level, gain_db)``: ``y`` without its DC offset and sub-20 Hz content, scaled so that its
    gated level equals ``target_dbfs`` (float32; no clipping, values may exceed 1.0). Silent input is **reported,
    not amplified**: ``level.silent`` is True, ``gain_db`` is 0.0 and ``audio`` is ``y`` so filtered (as float32);
    the caller answers silence its own way.
``gain_db_for(level, target_dbfs=TARGET_DBFS) -> float``
    the gain that ``normalise_level`` applies, for callers that measure a whole track once and scale its windows
    with the same gain (keeps loud/quiet contrast inside the track) instead of normalising every window.

Definition (in the spirit of EBU R128 gating, without its K-weighting, which the networks' own spectra make moot)
--------------------------------------------------------------------------------------------------------------
0. Content below hearing is removed: the input's mean (its DC offset), then everything below ``HIGHPASS_HZ`` = 20 Hz
   (2nd-order Butterworth, run forward and backward: zero phase, 4th-order slope). Inaudible, it still leaked into
   the networks' lowest mel bands and inflated the level: a soundtrack with an offset of -0.13 full scale and strong
   sub-20 Hz drift read arousal 4.9 as decoded and 6.0 after an Opus round trip (Opus drops both); with the offset
   alone removed the gap was still 0.5, with both removed it is 0.00 (valence 0.10). A constant offset (an
   interface's idle input) read as confident music. 66 of the 600 shared 4Q clips carry an offset above -40 dB of
   their RMS.
1. Mean square of consecutive blocks of ``BLOCK_S`` = 50 ms (a last partial block is taken aligned to the end;
   input shorter than one block is one block).
2. Robust mean: the mean of the block mean squares without the loudest ``TRIM`` = 5 % of blocks (rounded up, at
   least one block kept), so that a click or a single peak does not count.
3. Silence: the robust mean of all blocks is below ``SILENCE_FLOOR_DBFS`` (-70 dBFS RMS: digital or near-digital
   silence, decoder dither, a lone click in silence) -> ``silent``.
4. Relative gate: blocks more than ``RELATIVE_GATE_DB`` = 20 dB below that robust mean are left out (pauses, fade
   tails and pianissimo intros do not pull the level down).
5. Level = 10*log10(robust mean of the kept blocks).

Every step is homogeneous in the signal's power (means, order statistics, a threshold relative to a mean), so for
any gain ``g`` that keeps the input above the silence floor, ``measure_level(g*y).dbfs == measure_level(y).dbfs +
20*log10(g)`` and ``normalise_level(g*y).audio == normalise_level(y).audio`` up to float rounding: exactly
gain-invariant. A single peak cannot steer it the way it steers peak normalisation (a full-scale click in music
40 dB quieter moves the level by < 1 dB; tested).

``TARGET_DBFS`` = -16 dBFS is the gated level of typical commercially mastered music (the 600 shared 4Q clips:
median -16.8 dBFS at their native rate, quartiles -19.6 / -13.6; 40 of them at 12 kHz: median -15.9, held within
2 dB by ``tests/test_level.py::test_target_is_typical_of_mastered_music``), so typical input is scaled little and
the networks see the levels they were trained on.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np

BLOCK_S = 0.05
TRIM = 0.05
SILENCE_FLOOR_DBFS = -70.0
RELATIVE_GATE_DB = 20.0
TARGET_DBFS = -16.0
HIGHPASS_HZ = 20.0


class Level(NamedTuple):
    dbfs: float  # gated level, dBFS RMS; -inf for all-zero or empty input
    silent: bool  # whole-input RMS below SILENCE_FLOOR_DBFS


class Normalised(NamedTuple):
    audio: np.ndarray  # float32, DC and sub-20 Hz removed, scaled to the target level (unscaled when silent)
    level: Level  # of the input, before scaling
    gain_db: float  # applied gain; 0.0 when silent


@lru_cache(maxsize=8)
def _highpass(sr: int) -> np.ndarray:
    from scipy.signal import butter

    return butter(2, HIGHPASS_HZ, btype="highpass", fs=sr, output="sos")


def _audible(y, sr: int) -> np.ndarray:
    """Mono float64 audio without its mean and its content below ``HIGHPASS_HZ`` (step 0); raises ValueError for a
    non-positive rate, non-1-D or non-finite input."""
    from scipy.signal import sosfiltfilt

    if sr <= 0:
        raise ValueError(f"level: sample rate must be positive, got {sr}")
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"level: expected mono 1-D audio, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("level: audio contains NaN or inf samples")
    if len(y) == 0:
        return y
    y = y - y.mean()
    if HIGHPASS_HZ >= sr / 2 or len(y) < 2:
        return y
    # padding of three cut-off periods lets the filter settle outside the signal (scipy's default is 9 samples)
    return sosfiltfilt(_highpass(sr), y, padlen=min(len(y) - 1, 3 * sr // int(HIGHPASS_HZ)))


def _block_mean_squares(y: np.ndarray, sr: int) -> np.ndarray:
    block = max(1, round(BLOCK_S * sr))
    if len(y) <= block:
        return np.array([np.mean(y * y)])
    n = len(y) // block
    blocks = np.mean((y[: n * block] * y[: n * block]).reshape(n, block), axis=1)
    if n * block < len(y):  # the tail, as a block aligned to the end
        blocks = np.append(blocks, np.mean(y[-block:] * y[-block:]))
    return blocks


def _robust_mean(blocks: np.ndarray) -> float:
    keep = max(1, len(blocks) - math.ceil(TRIM * len(blocks)))
    return float(np.mean(np.sort(blocks)[:keep]))


def measure_level(y, sr: int) -> Level:
    """Gated level of mono audio (see the module docstring); raises ValueError for non-1-D or non-finite input."""
    return _measure_audible(_audible(y, sr), sr)


def _measure_audible(y: np.ndarray, sr: int) -> Level:
    if len(y) == 0:
        return Level(-math.inf, True)
    blocks = _block_mean_squares(y, sr)
    reference = _robust_mean(blocks)
    if reference == 0.0:
        return Level(-math.inf, True)
    silent = 10 * math.log10(reference) < SILENCE_FLOOR_DBFS
    # The loudest kept blocks are >= the robust mean of all, so `kept` is never empty.
    kept = blocks[blocks >= reference * 10 ** (-RELATIVE_GATE_DB / 10)]
    return Level(10 * math.log10(_robust_mean(kept)), silent)


def gain_db_for(level: Level, target_dbfs: float = TARGET_DBFS) -> float:
    """Gain (dB) that brings ``level`` to ``target_dbfs``; 0.0 for silence (silence is never amplified)."""
    return 0.0 if level.silent else target_dbfs - level.dbfs


def normalise_level(y, sr: int, target_dbfs: float = TARGET_DBFS) -> Normalised:
    """Remove the DC offset and sub-20 Hz content of mono audio and scale it to ``target_dbfs`` gated level; silent
    input comes back unscaled and flagged."""
    y64 = _audible(y, sr)
    level = _measure_audible(y64, sr)
    gain_db = gain_db_for(level, target_dbfs)
    audio = y64 * 10 ** (gain_db / 20) if gain_db else y64
    return Normalised(audio.astype(np.float32), level, gain_db)
