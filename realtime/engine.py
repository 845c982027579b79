"""The sliding-window engine: a scheduler that cuts windows out of the ring buffer and a worker that runs the model.

Live input never waits for the model. The scheduler hands windows to the worker through a small mailbox (one slot on
a CPU; ``batch`` slots on a GPU, whose contents are analysed as one batch): when the worker is still busy, a newer
window replaces the oldest waiting one and the replaced window is counted as skipped. So a model slower than the hop lowers the update rate, never queues stale audio, and memory
stays flat.

A file read without pace is analysed by the package's one analysis pass (:func:`m2e_plugin.analysis.iter_windows`)
instead: decoded at the model's rate in the model's blocks, back-pressured instead of skipping, cut into the same
windows (end-aligned tail included) with the same values as ``m2e predict --timeline``.

(Near 400 lines because the live scheduler and the file pass sit side by side and share the worker's delivery and
error accounting.)
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
from m2e_plugin.backends.base import check_prediction
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
    """Pending jobs, at most ``size``; ``put_latest`` drops (and reports) the oldest one the worker has not taken.

    ``size`` is 1 on a CPU (only the newest window matters) and a few windows on a GPU, where analysing them as one
    batch costs about as much as one.
    """

    def __init__(self, size: int = 1):
        self._cond = threading.Condition()
        self._items: deque[_Job] = deque()
        self.size = max(1, int(size))
        self._busy = False

    def put_latest(self, item: _Job) -> bool:
        with self._cond:
            dropped = len(self._items) >= self.size
            if dropped:
                self._items.popleft()
            self._items.append(item)
            self._cond.notify_all()
            return dropped

    def take(self, timeout: float) -> list[_Job]:
        """Everything pending (oldest first), waiting up to ``timeout`` for something."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            items = list(self._items)
            self._items.clear()
            if items:
                self._busy = True
            self._cond.notify_all()
            return items

    def done(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return not self._items and not self._busy


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
        self.current = None
        self.current = self._build(model) if isinstance(model, str) else model
        self.loading: str | None = None
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None

    def _build(self, name: str):
        from m2e_plugin.backends.base import accepted_options
        from m2e_plugin.predictor import Music2emo

        # The first model gets every option (one it does not take is an error); a model switched to live gets
        # those it takes (music2emo's --mert does not stop a switch to lite).
        options = self.model_options if self.current is None else accepted_options(name, self.model_options)
        return Music2emo(model=name, device=self.device, **options)

    @property
    def name(self) -> str:
        return self.current.model_name

    def warm_up(self, seconds: float | None = None) -> float:
        """Run the model once on silence (first calls pay for lazy initialisation, kernel selection, CUDA
        context...), so the first live window is as fast as the rest. Returns the time it took (ms)."""
        backend = self.current.backend
        n = max(1, int(round(float(seconds or backend.window_seconds) * backend.sample_rate)))
        t0 = time.perf_counter()
        backend.predict_window(np.zeros(n, dtype=np.float32))
        return (time.perf_counter() - t0) * 1000.0

    def request(self, name: str, reason: str = "") -> bool:
        """Load ``name`` in the background and switch to it when ready; False when a load is already running."""
        with self._lock:
            if self.loading is not None:
                log.warning("model %r requested while %r is still loading; ignored", name, self.loading)
                return False
            self.loading = name
        # said before the loader starts: a fast load's "switched to model" came before "loading model", and a
        # request ignored above was still logged as loading
        log.info("%sloading model %s", f"{reason}: " if reason else "", name)
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
        Where the audio comes from; ``source.realtime`` selects the live scheduler (skips windows when the model is
        busy) or, for a file without pace, the shared analysis pass (every window).
    runner : ModelRunner
        The model; may be swapped while running.
    window, hop : float
        Window length and hop in seconds (changeable while running with :meth:`set_window` / :meth:`set_hop`).
    on_result : callable
        Called on the worker thread with each :class:`WindowResult`; must be quick.
    batch : int
        Live input: windows kept waiting for a busy worker and analysed together with ``predict_windows`` (a GPU
        batches them for about the cost of one). 1 (CPU): only the newest window waits.
    first_window : float
        Live input: after the input opens (or reopens), the first windows grow from this many seconds to
        ``window``, so values start flowing before a long window has filled.
    """

    POLL_S = 0.002

    def __init__(self, source: Source, runner: ModelRunner, *, window: float, hop: float,
                 on_result: Callable[[WindowResult], None], batch: int = 1, first_window: float = 3.0):
        self.source = source
        self.runner = runner
        self.on_result = on_result
        self.window, self.hop = check_window_hop(window, hop, max_seconds=MAX_WINDOW_S)
        self.first_window = float(first_window)
        self._mailbox = _Mailbox(batch)
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
        self.failing = False  # the latest window failed (heartbeat state "model error" until one succeeds)
        self.batches = 0  # model calls (several windows per call when batching)
        self.inference_ms: deque[float] = deque(maxlen=20000)  # bounded history for the summary's median
        self.level_db = -120.0  # RMS level of the latest window (dBFS): shows that audio is arriving
        self.busy_since: float | None = None  # monotonic start of the model call in progress (watchdog)
        self._next_error_log = 0.0
        self._next_skip_log = 0.0

    @property
    def file_mode(self) -> bool:
        """A file read without pace: analysed by the shared analysis pass (see the module docstring)."""
        return not self.source.realtime

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
            if getattr(self.source, "_thread", None) is not None:
                raise RuntimeError("start the engine before its file source (the file is decoded at the model's rate)")
            backend = self.runner.current.backend
            self.source.decode_at(backend.sample_rate, backend.block_seconds)
            self.source.ring.reader_floor = 0  # back-pressure from the first block on
            targets = ((self._analyse_file, "m2e-file-analysis"),)
        else:
            targets = ((self._schedule_live, "m2e-scheduler"), (self._work, "m2e-worker"))
        for target, name in targets:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def abandoned(self) -> bool:
        """A thread still runs after :meth:`stop` (a model call that never returned)."""
        return self._stop.is_set() and any(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the threads; a model call that does not return within ``timeout`` is abandoned (daemon thread)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("%s did not stop within %.1f s (model call still running); abandoning it", t.name,
                            timeout)

    # -- schedulers --------------------------------------------------------------------------------------------
    def _schedule_live(self) -> None:
        """Live input: the newest audio matters. Waits while the input is lost, restarts after a reopen (a window
        never straddles the gap), skips ahead when it fell behind, grows the first windows."""
        src = self.source
        ring, sr = src.ring, src.sample_rate
        next_end: int | None = None
        epoch = None
        try:
            while not self._stop.is_set():
                if self._paused.is_set() or src.state != "live":
                    next_end = None  # after resume / reopen, start from the newest audio
                    self._stop.wait(0.02)
                    continue
                if src.epoch != epoch:
                    epoch, next_end = src.epoch, None
                win = int(round(self.window * sr))
                hop = int(round(self.hop * sr))
                first = src.epoch_start
                finished = src.finished.is_set()  # a paced file at its end: read before `written` (then final)
                written = ring.written
                if next_end is None and written - first < min(win, int(self.first_window * sr)):
                    if finished:
                        if self.windows == 0 and written > first:  # input shorter than one window
                            self._submit(ring.read(written, written - first), sr, written, ring)
                        break
                    self._stop.wait(self.POLL_S)
                    continue
                if next_end is None:
                    next_end = written
                if written < next_end:
                    if finished:
                        break
                    self._stop.wait(self.POLL_S)
                    continue
                if written - next_end >= hop:
                    behind = (written - next_end) // hop  # the scheduler itself was starved: jump to the newest
                    self._skip(behind)
                    next_end += behind * hop
                self._submit(ring.read(next_end, min(win, next_end - first)), sr, next_end, ring)
                next_end += hop
        finally:
            self._scheduler_done.set()

    def _skip(self, n: int) -> None:
        self.skipped += n
        now = time.monotonic()
        if now >= self._next_skip_log:  # throttled: a slow model skips windows all the time
            self._next_skip_log = now + 30.0
            log.warning("model slower than the hop: %d window%s skipped so far (last inference %.0f ms)",
                        self.skipped, "" if self.skipped == 1 else "s",
                        self.inference_ms[-1] if self.inference_ms else 0.0)

    def _submit(self, audio, sr: int, end: int, ring) -> None:
        if audio is None:
            self.overruns += 1
            return
        job = _Job(audio, sr, end, ring.arrival_time(end) or time.monotonic())
        self.level_db = float(10.0 * np.log10(max(float(np.mean(np.square(audio))), 1e-12)))
        self.windows += 1
        if self._mailbox.put_latest(job):
            self._skip(1)

    # -- worker ----------------------------------------------------------------------------------------------
    def _work(self) -> None:
        backend = self.runner.current.backend
        if self.source.sample_rate != backend.sample_rate:  # build the resampling kernel before the first window
            resample(np.zeros(1024, dtype=np.float32), self.source.sample_rate, backend.sample_rate)
        while not self._stop.is_set():
            jobs = self._mailbox.take(timeout=0.05)
            if not jobs:
                if self._scheduler_done.is_set() and self._mailbox.idle():
                    self.done.set()
                    return
                continue
            try:
                self._analyse(jobs)
            except Exception as exc:  # a failing model must not end the show
                self._model_failed(exc, len(jobs))
            finally:
                self.busy_since = None
                self._mailbox.done()

    def _model_failed(self, exc: BaseException, windows: int = 1) -> None:
        self.errors += windows
        self.failing = True
        now = time.monotonic()
        if now >= self._next_error_log:
            self._next_error_log = now + 10.0
            log.error("model failed on a window (%d failures so far): %s: %s", self.errors, type(exc).__name__, exc)

    def _analyse(self, jobs: list[_Job]) -> None:
        model = self.runner.current
        backend = model.backend
        windows = [resample(j.audio, j.sample_rate, backend.sample_rate) for j in jobs]
        t0 = time.perf_counter()
        self.busy_since = time.monotonic()
        if len(windows) == 1:
            predictions = [backend.predict_window(windows[0])]
        else:  # windows of unequal length (the growing first ones) are batched by the backend as it sees fit
            predictions = backend.predict_windows(windows)
        inference_ms = (time.perf_counter() - t0) * 1000.0
        self.batches += 1
        for job, prediction in zip(jobs, predictions):
            try:
                check_prediction(prediction, backend)  # (a file's analysis pass checks its own in iter_windows)
                self._deliver(model, prediction, stream_time=job.end_frame / job.sample_rate, end_time=job.end_time,
                              window_seconds=job.audio.size / job.sample_rate, inference_ms=inference_ms,
                              share_ms=inference_ms / len(jobs))
            except ValueError as exc:  # an unusable prediction: this window is dropped, the others still go out
                self._model_failed(exc)

    def _deliver(self, model, prediction, *, stream_time: float, end_time: float, window_seconds: float,
                 inference_ms: float, share_ms: float) -> None:
        backend = model.backend
        result = model.format(prediction)
        probs = np.asarray(prediction.mood_probabilities, dtype=np.float64)
        self.inference_ms.append(share_ms)
        self.updates += 1
        self.failing = False
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
                self.batches += 1
                try:
                    self._deliver(model, w.prediction, stream_time=w.end, end_time=time.monotonic() - w.seconds,
                                  window_seconds=w.end - w.start, inference_ms=w.seconds * 1000.0,
                                  share_ms=w.seconds * 1000.0)
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
