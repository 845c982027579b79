"""The one analysis pass: decoded blocks -> a track-level prediction and per-window predictions.

``m2e predict`` (with ``--timeline``), every extractor built on a model, and ``m2e stream --input FILE --no-pace``
all run :func:`analyse` / :func:`iter_windows`, so they cut the same file into the same windows and get the same
values. What the pass needs from a model is decided on the backend: ``sample_rate`` and ``block_seconds`` (how it
is decoded), ``window_seconds``/``hop_seconds`` (the default windows) and ``window_batch`` (windows per call).

Windows (:func:`sliding_windows`): ``window`` seconds every ``hop`` seconds from the start; audio shorter than a
window gives one short window; a tail that a full hop would skip gets a final window ending at the end of the audio,
so every sample is covered (unless the hop is longer than the window: :class:`SparseWindowsWarning`). The file is decoded once: the window pass and ``predict_track`` read the same blocks.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from m2e_plugin.audio import AudioInput, _is_array, load_audio, stream_audio
from m2e_plugin.backends.base import EmotionBackend, Prediction, check_prediction


@dataclass(frozen=True)
class WindowPrediction:
    """One window's prediction; ``seconds`` is its share of the compute time of its batch."""

    start: float
    end: float
    prediction: Prediction
    seconds: float = 0.0


@dataclass
class Analysis:
    """What :func:`analyse` returns."""

    track: Prediction | None  # None when the track prediction was not asked for
    windows: list[WindowPrediction] = field(default_factory=list)
    duration: float = 0.0  # seconds of audio analysed
    window: float = 0.0
    hop: float = 0.0


#: The shortest window or hop: a hop that rounds to 0 samples never advances (a live scheduler divided by it).
MIN_WINDOW_HOP_S = 0.01


def check_window_hop(window: float | None, hop: float, *, max_seconds: float | None = None
                     ) -> tuple[float | None, float]:
    """``(window, hop)`` as floats; ``ValueError`` naming the offending one unless each is finite, at least
    :data:`MIN_WINDOW_HOP_S` and at most ``max_seconds``. ``window=None`` (the model's own) checks the hop alone."""
    checked = []
    for name, value in (("window", window), ("hop", hop)):
        if value is None and name == "window":
            checked.append(None)
            continue
        value = float(value)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive, got {value:g}")
        if value < MIN_WINDOW_HOP_S:
            raise ValueError(f"{name} must be at least {MIN_WINDOW_HOP_S:g} seconds, got {value:g}")
        if max_seconds is not None and value > max_seconds:
            raise ValueError(f"{name} must be at most {max_seconds:g} seconds, got {value:g}")
        checked.append(value)
    return checked[0], checked[1]


def window_settings(backend: EmotionBackend, window: float | None = None, hop: float | None = None
                    ) -> tuple[float, float]:
    """The window and hop to use: the given ones, else the backend's defaults; checked."""
    # "is None", not "or": an explicit 0 is an error to report, not a request for the default.
    window, hop = check_window_hop(backend.window_seconds if window is None else window,
                                   backend.hop_seconds if hop is None else hop)
    warn_if_sparse(window, hop)
    return window, hop


class SparseWindowsWarning(UserWarning):
    """The hop is longer than the window: the audio between windows is not analysed."""


def warn_if_sparse(window: float | None, hop: float) -> None:
    """Warn when windows leave gaps: sampling a long file sparsely can be meant, but a swapped window/hop is the
    common cause, and the result would not say that part of the audio was skipped."""
    if window is not None and hop > window:
        warnings.warn(f"hop {hop:g} s is longer than the window {window:g} s: {hop - window:g} s of audio after "
                      f"each window is not analysed", SparseWindowsWarning, stacklevel=3)


def decode_blocks(backend: EmotionBackend, audio: AudioInput, sr: int | None = None,
                  warnings: list | None = None) -> Iterator[np.ndarray]:
    """Consecutive mono blocks of ``backend.block_seconds`` at ``backend.sample_rate``: files are streamed (bounded
    memory whatever their length), arrays / ``(samples, sr)`` are resampled and cut. What decoding lost is appended
    to ``warnings`` (see :func:`m2e_plugin.audio.stream_audio`)."""
    rate = int(backend.sample_rate)
    if sr is not None and not (isinstance(audio, tuple) or _is_array(audio)):
        # A file, bytes or a stream carries its own rate; an ignored sr= would hide a caller's mistake.
        raise ValueError(f"sr= gives the sample rate of a sample array; a {type(audio).__name__} input carries its "
                         f"own (got sr={sr!r})")
    if isinstance(audio, tuple) or _is_array(audio):  # a torch tensor too: it has __array__
        samples, _ = load_audio(audio, sr=sr, target_sr=rate)
        step = max(1, int(backend.block_seconds * rate))
        return (samples[i : i + step] for i in range(0, samples.size, step))
    return stream_audio(audio, rate, block_seconds=backend.block_seconds, warnings=warnings)


def sliding_windows(blocks: Iterable[np.ndarray], sample_rate: int, window: float, hop: float
                    ) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(start_seconds, samples)`` windows of ``window`` s every ``hop`` s from a stream of blocks.

    The result does not depend on how the audio is cut into blocks. Yielded arrays may be views of an internal
    buffer: copy them to keep them past the next iteration.
    """
    win = max(1, int(round(window * sample_rate)))
    step = max(1, int(round(hop * sample_rate)))
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0  # absolute sample index of buffer[0]
    next_start = 0
    last_end = 0
    for block in blocks:
        buffer = np.concatenate([buffer, np.asarray(block, dtype=np.float32)])
        while next_start + win <= offset + buffer.size:
            local = next_start - offset
            yield next_start / sample_rate, buffer[local : local + win]
            last_end = next_start + win
            next_start += step
        # Keep at least one window of history so the final, end-aligned window can always be cut.
        drop = min(next_start - offset, buffer.size - win)
        if drop > 0:
            buffer = buffer[drop:]
            offset += drop
    total = offset + buffer.size
    if total == 0:
        return
    if last_end < total:
        start = max(0, total - win)
        yield start / sample_rate, buffer[start - offset :]


def iter_windows(backend: EmotionBackend, blocks: Iterable[np.ndarray], *, window: float | None = None,
                 hop: float | None = None,
                 on_error: Callable[[BaseException, int], None] | None = None) -> Iterator[WindowPrediction]:
    """Per-window predictions over consecutive blocks at ``backend.sample_rate``, ``backend.window_batch`` windows
    per :meth:`~m2e_plugin.backends.base.EmotionBackend.predict_windows` call, yielded as each batch is done.

    ``on_error(exc, n_windows)``: a batch the model fails on is reported there and skipped (the realtime file mode
    goes on); without it the exception propagates. Decoding errors always propagate.
    """
    window, hop = window_settings(backend, window, hop)
    rate = int(backend.sample_rate)
    batch = max(1, int(getattr(backend, "window_batch", 1) or 1))
    pending: list[tuple[float, np.ndarray]] = []

    def run() -> list[WindowPrediction]:
        segments = [seg for _, seg in pending]
        t0 = time.perf_counter()
        try:
            predictions = [check_prediction(p, backend) for p in backend.predict_windows(segments)]
            if len(predictions) != len(segments):
                raise ValueError(f"model {backend.name!r} returned {len(predictions)} predictions for "
                                 f"{len(segments)} windows")
        except Exception as exc:
            if on_error is None:
                raise
            on_error(exc, len(segments))
            predictions = []
        share = (time.perf_counter() - t0) / max(1, len(segments))
        done = [WindowPrediction(start, start + seg.size / rate, p, share) for (start, seg), p in zip(pending, predictions)]
        pending.clear()
        return done

    for start, segment in sliding_windows(blocks, rate, window, hop):
        pending.append((start, segment.copy()))  # copy: the window may be a view of the reused buffer
        if len(pending) >= batch:
            yield from run()
    if pending:
        yield from run()


def analyse(backend: EmotionBackend, blocks: Iterable[np.ndarray], *, track: bool = True, windows: bool = False,
            window: float | None = None, hop: float | None = None) -> Analysis:
    """The track-level prediction and/or the per-window predictions of one decoded input, in one pass.

    Parameters
    ----------
    backend : EmotionBackend
        The model.
    blocks : iterable of np.ndarray
        Consecutive mono float32 blocks at ``backend.sample_rate`` (:func:`decode_blocks`).
    track, windows : bool
        Which predictions to make. With both, one decode serves both: each block the window pass reads is handed
        on to ``predict_track`` at once, so only a block or two is held.
    window, hop : float, optional
        Window length and hop in seconds; the backend's defaults when omitted.
    """
    window, hop = window_settings(backend, window, hop)
    rate = int(backend.sample_rate)
    result = Analysis(track=None, window=window, hop=hop)
    frames = [0]

    def counted() -> Iterator[np.ndarray]:
        for block in blocks:
            frames[0] += np.asarray(block).size
            yield block

    if not windows:
        result.track = check_prediction(backend.predict_track(counted()), backend)
    elif not track:
        result.windows = list(iter_windows(backend, counted(), window=window, hop=hop))
    else:
        decoded: deque = deque()  # blocks the window pass has read and predict_track has not yet

        def source() -> Iterator[np.ndarray]:
            for block in counted():
                decoded.append(block)
                yield block

        def track_blocks() -> Iterator[np.ndarray]:
            for w in iter_windows(backend, source(), window=window, hop=hop):
                result.windows.append(w)
                while decoded:
                    yield decoded.popleft()
            while decoded:
                yield decoded.popleft()

        result.track = check_prediction(backend.predict_track(track_blocks()), backend)
    result.duration = frames[0] / rate
    return result
