"""Note posteriors of a learned, timbre-independent transcription network, as a front end for chords and key.

The network is Spotify's basic-pitch "NMP" (Bittner et al., ICASSP 2022): trained on many instruments and on the
voice, it maps 2 s windows of 22.05 kHz audio to per-frame note posteriors over the 88 piano keys (hop 256 samples,
~86 frames/s). :func:`note_salience` runs any window function over a whole track, window by window, and returns the
posteriors pooled onto the recognisers' 1024-sample grid as a ``(72, frames)`` C1..B6 matrix, the shape of a
:func:`~m2e_plugin.harmony.features.semitone_spectrum`, so the template chord decoder and the key cues read it as
they read the CQT.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

WINDOW_SAMPLES = 43844  # the network's input: 2 s at 22.05 kHz less one hop
FRAME_HOP = 256
WINDOW_FRAMES = 172  # frames per window; frame j is centred on sample 256 * j of the window
EDGE_FRAMES = 15  # frames dropped at each side of a window (their receptive field leaves the window)
KEPT_FRAMES = WINDOW_FRAMES - 2 * EDGE_FRAMES - 1  # 141: windows advance by 141 hops, so frames stay on one grid
WINDOW_HOP = KEPT_FRAMES * FRAME_HOP
LOWEST_MIDI = 21  # A0, the network's first note bin
GRID_HOP = 1024  # output grid (the chord recogniser's hop): 4 network frames
_POOL = GRID_HOP // FRAME_HOP
_POOL_WEIGHTS = np.array([0.5, 1.0, 1.0, 1.0, 0.5]) / 4.0  # centred on the grid frame, like a CQT frame
SEMITONE_MIDI = (24, 96)  # C1 .. B6, the semitone spectrum's range

WindowFunction = Callable[[np.ndarray], np.ndarray]  # (windows, 43844) float32 -> (windows, 172, 88) posteriors


def network_frames(y: np.ndarray, run: WindowFunction, batch: int = 16):
    """Yield ``(frames, 88)`` note posteriors of 22.05 kHz mono audio on the 256-sample grid (frame i centred on
    sample 256 i), a batch of windows at a time; ``1 + len(y) // 256`` frames in all."""
    y = np.asarray(y, dtype=np.float32)
    total = 1 + y.size // FRAME_HOP
    # Window w covers samples w * WINDOW_HOP - 15 hops ...; its frames 15 .. 155 are grid frames 141 w ... 141 w + 140.
    n_windows = -(-total // KEPT_FRAMES)
    done = 0
    for first in range(0, n_windows, batch):
        windows = np.zeros((min(batch, n_windows - first), WINDOW_SAMPLES), dtype=np.float32)
        for i in range(windows.shape[0]):
            start = (first + i) * WINDOW_HOP - EDGE_FRAMES * FRAME_HOP
            a, b = max(start, 0), min(start + WINDOW_SAMPLES, y.size)
            if b > a:
                windows[i, a - start:b - start] = y[a:b]
        post = np.asarray(run(windows))[:, EDGE_FRAMES:EDGE_FRAMES + KEPT_FRAMES]
        frames = post.reshape(-1, post.shape[-1])[: total - done]
        done += frames.shape[0]
        yield frames


def pool_to_grid(chunks, n_frames: int, columns: slice = slice(None)) -> np.ndarray:
    """Pool 256-hop frames (an iterable of ``(frames, bins)`` chunks, ``n_frames`` in all) onto the 1024-sample grid:
    grid frame k is the weighted mean of frames 4k-2 .. 4k+2 (edges repeated). Returns ``(bins, 1 + (n_frames - 1)
    // 4)`` float32 (only the ``columns`` kept); only a few chunks and the float32 output are held at once."""
    out = None
    buf = None
    base = 0  # global index of buf[0]
    k = 0
    n_grid = 1 + (n_frames - 1) // _POOL
    for chunk in chunks:
        buf = chunk if buf is None else np.concatenate([buf, chunk])
        if out is None:
            out = np.zeros((n_grid, np.arange(buf.shape[1])[columns].size), dtype=np.float32)
        end = base + buf.shape[0]
        while k < n_grid and (_POOL * k + 2 < end or end >= n_frames):
            idx = np.clip(np.arange(_POOL * k - 2, _POOL * k + 3), 0, n_frames - 1) - base
            out[k] = (_POOL_WEIGHTS @ buf[idx])[columns]
            k += 1
        drop = max(0, _POOL * k - 2 - base)
        buf, base = buf[drop:], base + drop
    return np.ascontiguousarray(out.T) if out is not None else np.zeros((0, 0), dtype=np.float32)


_DEFAULT_RUNS: dict = {}  # device -> the package's network there, loaded once per process


def default_run(device: str = "cpu") -> WindowFunction:
    """The shipped network (:mod:`m2e_plugin.backbones.basic_pitch`) on torch ``device`` as a window function,
    loaded once per device (on a GPU the chord front end then costs a fraction of a CPU's time per window)."""
    if device not in _DEFAULT_RUNS:
        from m2e_plugin.backbones.basic_pitch import note_posteriors_runner

        _DEFAULT_RUNS[device] = note_posteriors_runner(device=device)
    return _DEFAULT_RUNS[device]


def note_salience(y: np.ndarray, run: WindowFunction | None = None, batch: int = 16) -> np.ndarray:
    """Note posteriors of 22.05 kHz mono audio on the recognisers' 1024-sample grid: ``(72, 1 + len(y) // 1024)``
    float32 over C1..B6 (audio shorter than 1024 samples is zero-padded to it), the shape of a CQT
    :func:`~m2e_plugin.harmony.features.semitone_spectrum`. ``run``: the network as a window function (default:
    :func:`default_run`). Windows are run ``batch`` at a time and pooled as they come: besides the input, a track
    holds one batch's 256-hop frames and the float32 output (2 h: ~120 MB)."""
    run = run or default_run()
    y = np.asarray(y, dtype=np.float32)
    if y.size < GRID_HOP:  # as the CQT spectra do, so that both have the same frames
        y = np.pad(y, (0, GRID_HOP - y.size))
    n_frames = 1 + y.size // FRAME_HOP
    columns = slice(SEMITONE_MIDI[0] - LOWEST_MIDI, SEMITONE_MIDI[1] - LOWEST_MIDI)
    return pool_to_grid(network_frames(y, run, batch), n_frames, columns)
