"""The sliding-window engine: a scheduler that cuts windows out of the ring buffer and a worker that runs the model.

Live input never waits for the model. The scheduler hands windows to the worker through a one-slot mailbox: when
the worker is still busy with an older window, a newer one replaces the waiting one and the replaced window is
counted as skipped. So a model slower than the hop lowers the update rate, never queues stale audio, and memory
stays flat.

A file read without pace is analysed by the package's one analysis pass (:func:`m2e_plugin.analysis.iter_windows`)
instead: decoded at the model's rate in the model's blocks, back-pressured instead of skipping, cut into the same
windows (end-aligned tail included) with the same values as ``m2e predict --timeline``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from m2e_plugin.analysis import check_window_hop
from m2e_plugin.audio import resample
from m2e_plugin.realtime.capture import MAX_WINDOW_S, Source

log = logging.getLogger("m2e.realtime.engine")


@dataclass
class WindowResult:
    """One model output for one window."""

    result: dict[str, Any]  # Music2emo.format() output (valence/arousal 1-9, moods, quadrant, model)
    tags: tuple[str, ...]
    probs: np.ndarray  # (len(tags),) mood probabilities in [0, 1]
    stream_time: float  # seconds of input audio at the window's end
    window_end_time: float  # monotonic time at which the window's last frame arrived
    window_seconds: float
    inference_ms: float
    model: str


@dataclass
class _Job:
    audio: np.ndarray
    sample_rate: int
    end_frame: int
    end_time: float


class _Mailbox:
    """One pending job at most; ``put_latest`` replaces (and reports) a job the worker has not taken yet."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: _Job | None = None
        self._busy = False

    def put_latest(self, item: _Job) -> bool:
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify_all()
            return replaced

    def put_wait(self, item: _Job, stop: threading.Event) -> bool:
        with self._cond:
            while self._item is not None:
                if stop.is_set():
                    return False
                self._cond.wait(0.05)
            self._item = item
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> _Job | None:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            if item is not None:
                self._busy = True
            self._cond.notify_all()
            return item

    def done(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return self._item is None and not self._busy


class ModelRunner:
    """Holds the current :class:`~m2e_plugin.predictor.Music2emo` and swaps models without stopping the stream.

    Parameters
    ----------
    model : str or Music2emo
        A model name (built here) or a ready instance.
    device : str
        Compute device for models built by name ("auto", "cpu", "cuda", ...).
    model_options : dict
        Passed to :class:`Music2emo` (``mert=``, ``checkpoint=``... for ``music2emo``).
    """

    def __init__(self, model="lite", *, device: str = "auto", model_options: dict | None = None):
        self.device = device
        self.model_options = dict(model_options or {})
        self.current = self._build(model) if isinstance(model, str) else model
        self.loading: str | None = None
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None

    def _build(self, name: str):
        from m2e_plugin.predictor import Music2emo

        return Music2emo(model=name, device=self.device, **self.model_options)

    @property
    def name(self) -> str:
        return self.current.model_name

    def request(self, name: str) -> bool:
        """Load ``name`` in the background and switch to it when ready; False when a load is already running."""
        with self._lock:
            if self.loading is not None:
                log.warning("model %r requested while %r is still loading; ignored", name, self.loading)
                return False
            self.loading = name
        self._loader = threading.Thread(target=self._load, args=(name,), name="m2e-model-loader", daemon=True)
        self._loader.start()
        return True

    def _load(self, name: str) -> None:
        try:
            model = self._build(name)
            self.current = model  # one reference swap: the worker picks it up at its next window
            log.info("switched to model %s", name)
        except Exception as exc:
            log.error("cannot switch to model %r: %s (keeping %s)", name, exc, self.current.model_name)
        finally:
            with self._lock:
                self.loading = None


class Engine:
    """Sliding windows over a :class:`Source`'s ring buffer, analysed by a background worker.

    Parameters
    ----------
    source : Source
        Where the audio comes from; ``source.realtime`` selects skip (live) or wait (file, no pace) behaviour.
    runner : ModelRunner
        The model; may be swapped while running.
    window, hop : float
        Window length and hop in seconds (changeable while running with :meth:`set_window` / :meth:`set_hop`).
    on_result : callable
        Called on the worker thread with each :class:`WindowResult`; must be quick.
    """

    POLL_S = 0.002

    def __init__(self, source: Source, runner: ModelRunner, *, window: float, hop: float,
                 on_result: Callable[[WindowResult], None]):
        self.source = source
        self.runner = runner
        self.on_result = on_result
        self.window, self.hop = check_window_hop(window, hop, max_seconds=MAX_WINDOW_S)
        self._mailbox = _Mailbox()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self.done = threading.Event()  # a finite source is exhausted and its last window analysed
        self._scheduler_done = threading.Event()
        self._threads: list[threading.Thread] = []
        # Counters (read by the status heartbeat and the final summary).
        self.windows = 0  # windows handed to the worker
        self.updates = 0  # windows analysed
        self.skipped = 0  # windows dropped because the model was busy or the scheduler fell behind
        self.overruns = 0  # windows whose audio was overwritten before it could be read
        self.errors = 0  # model failures (the stream goes on)
        self.inference_ms: deque[float] = deque(maxlen=20000)  # bounded history for the summary's median
        self.level_db = -120.0  # RMS level of the latest window (dBFS): shows that audio is arriving
        self._next_error_log = 0.0

    @property
    def file_mode(self) -> bool:
        """A file read without pace: analysed by the shared analysis pass (see the module docstring)."""
        return not self.source.realtime and hasattr(self.source, "decode_at")

    def set_window(self, seconds: float) -> None:
        self.window, _ = check_window_hop(seconds, self.hop, max_seconds=MAX_WINDOW_S)

    def set_hop(self, seconds: float) -> None:
        _, self.hop = check_window_hop(self.window, seconds, max_seconds=MAX_WINDOW_S)

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def start(self) -> None:
        if self.file_mode:
            backend = self.runner.current.backend
            self.source.decode_at(backend.sample_rate, backend.block_seconds)
            self.source.ring.reader_floor = 0  # back-pressure from the first block on
            targets = ((self._analyse_file, "m2e-file-analysis"),)
        else:
            targets = ((self._schedule, "m2e-scheduler"), (self._work, "m2e-worker"))
        for target, name in targets:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=timeout)
            if t.is_alive():
                log.warning("%s did not stop within %.0f s (model call still running?)", t.name, timeout)

    # -- scheduler -------------------------------------------------------------------------------------------
    def _schedule(self) -> None:
        src = self.source
        ring, sr = src.ring, src.sample_rate
        next_end: int | None = None
        try:
            while not self._stop.is_set():
                win = int(round(self.window * sr))
                hop = int(round(self.hop * sr))
                finished = src.finished.is_set()  # read before `written`: if set, `written` is final
                written = ring.written
                if self._paused.is_set():
                    next_end = None  # after resume, start from the newest audio
                    self._stop.wait(0.02)
                    continue
                if next_end is None:
                    # Live: the first window ends as soon as there is one (after a pause: now). File without
                    # pace: carry on where the reader stopped, so nothing is skipped.
                    next_end = max(win, written) if src.realtime else (ring.reader_floor or 0) + win
                if not src.realtime:
                    ring.reader_floor = max(0, next_end - win)
                if written < next_end:
                    if finished:
                        if self.windows == 0 and written > 0:  # input shorter than one window: analyse it all
                            self._submit(ring.read(written, written), sr, written, ring)
                        break
                    self._stop.wait(self.POLL_S)
                    continue
                if src.realtime and written - next_end >= hop:
                    behind = (written - next_end) // hop  # the scheduler itself was starved: jump to the newest
                    self.skipped += behind
                    next_end += behind * hop
                audio = ring.read(next_end, win)
                if audio is None:
                    self.overruns += 1
                else:
                    self._submit(audio, sr, next_end, ring)
                next_end += hop
        finally:
            ring.reader_floor = None  # never leave a back-pressured writer waiting on a dead reader
            self._scheduler_done.set()

    def _submit(self, audio, sr: int, end: int, ring) -> None:
        if audio is None:
            self.overruns += 1
            return
        job = _Job(audio, sr, end, ring.arrival_time(end) or time.monotonic())
        self.level_db = float(10.0 * np.log10(max(float(np.mean(np.square(audio))), 1e-12)))
        self.windows += 1
        if self.source.realtime:
            if self._mailbox.put_latest(job):
                self.skipped += 1
        else:
            self._mailbox.put_wait(job, self._stop)

    # -- worker ----------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            job = self._mailbox.take(timeout=0.05)
            if job is None:
                if self._scheduler_done.is_set() and self._mailbox.idle():
                    self.done.set()
                    return
                continue
            try:
                self._analyse(job)
            except Exception as exc:  # a failing model must not end the show
                self._model_failed(exc)
            finally:
                self._mailbox.done()

    def _model_failed(self, exc: BaseException, windows: int = 1) -> None:
        self.errors += windows
        now = time.monotonic()
        if now >= self._next_error_log:
            self._next_error_log = now + 10.0
            log.error("model failed on a window (%d failures so far): %s: %s", self.errors, type(exc).__name__, exc)

    def _analyse(self, job: _Job) -> None:
        model = self.runner.current
        backend = model.backend
        audio = resample(job.audio, job.sample_rate, backend.sample_rate)
        t0 = time.perf_counter()
        prediction = backend.predict_window(audio)
        self._deliver(model, prediction, stream_time=job.end_frame / job.sample_rate, end_time=job.end_time,
                      window_seconds=job.audio.size / job.sample_rate,
                      inference_ms=(time.perf_counter() - t0) * 1000.0)

    def _deliver(self, model, prediction, *, stream_time: float, end_time: float, window_seconds: float,
                 inference_ms: float) -> None:
        backend = model.backend
        result = model.format(prediction)
        probs = np.clip(np.asarray(prediction.mood_probabilities, dtype=np.float64), 0.0, 1.0)
        if not (np.isfinite(result["valence"]) and np.isfinite(result["arousal"]) and np.isfinite(probs).all()):
            raise ValueError("model returned non-finite values")
        self.inference_ms.append(inference_ms)
        self.updates += 1
        self.on_result(WindowResult(
            result=result, tags=tuple(backend.mood_tags), probs=probs, stream_time=stream_time,
            window_end_time=end_time, window_seconds=window_seconds, inference_ms=inference_ms, model=backend.name))

    # -- file without pace: the shared analysis pass ------------------------------------------------------
    def _analyse_file(self) -> None:
        from m2e_plugin.analysis import iter_windows

        model = self.runner.current  # a model switch applies to live and paced input, not to this pass
        src = self.source

        def failed(exc: BaseException, windows: int) -> None:
            self.windows += windows
            self._model_failed(exc, windows)

        try:
            for w in iter_windows(model.backend, self._ring_blocks(), window=self.window, hop=self.hop,
                                  on_error=failed):
                while self._paused.is_set() and not self._stop.is_set():
                    self._stop.wait(0.02)
                if self._stop.is_set():
                    break
                self.windows += 1
                try:
                    self._deliver(model, w.prediction, stream_time=w.end, end_time=time.monotonic() - w.seconds,
                                  window_seconds=w.end - w.start, inference_ms=w.seconds * 1000.0)
                except Exception as exc:
                    self._model_failed(exc)
        except Exception as exc:  # the stream itself broke (not the model): report it like a source error
            src.error = src.error or exc
            log.error("file analysis stopped: %s", exc)
        finally:
            src.ring.reader_floor = None  # never leave a back-pressured writer waiting on a dead reader
            self.done.set()

    def _ring_blocks(self):
        """What the file source wrote, in order, as it arrives; the reader floor releases what was read."""
        src = self.source
        ring = src.ring
        read = 0
        ring.reader_floor = 0
        while not self._stop.is_set():
            finished = src.finished.is_set()  # read before `written`: if set, `written` is final
            written = ring.written
            if written > read:
                block = ring.read(written, written - read)
                if block is None:  # cannot happen under back-pressure; never analyse a torn span
                    self.overruns += 1
                    return
                read = written
                ring.reader_floor = read
                self.level_db = float(10.0 * np.log10(max(float(np.mean(np.square(block))), 1e-12)))
                yield block
            elif finished:
                return
            else:
                self._stop.wait(self.POLL_S)
