"""A deterministic demo signal, so `m2e predict --demo` and the tests run on a fresh machine with no audio files.

It is a synthetic chord progression with a noise pulse, not music a listener would rate: it shows that the pipeline
runs end to end, nothing about accuracy (the README's figures come from real recordings).
"""

from __future__ import annotations

import numpy as np


def synth_music(seconds: float = 5.0, sr: int = 22050, *, seed: int = 0, tempo: float = 120.0,
                progression: tuple[tuple[int, ...], ...] = ((60, 64, 67), (67, 71, 74), (69, 72, 76), (65, 69, 72))
                ) -> np.ndarray:
    """Harmonic tones following ``progression`` (MIDI chords, one per bar; default I-V-vi-IV in C) plus a pulse."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    bar = 4 * 60.0 / tempo
    y = np.zeros_like(t)
    for i, start in enumerate(np.arange(0, seconds, bar)):
        seg = (t >= start) & (t < start + bar)
        for midi in progression[i % len(progression)]:
            f = 440.0 * 2 ** ((midi - 69) / 12)
            for h in (1, 2, 3):
                y[seg] += (0.3 / h) * np.sin(2 * np.pi * f * h * t[seg])
    beat = 60.0 / tempo
    env = np.exp(-((t % beat) / 0.05))
    y += 0.2 * env * rng.standard_normal(t.size)
    peak = np.abs(y).max()
    return (0.5 * y / peak if peak > 0 else y).astype(np.float32)
