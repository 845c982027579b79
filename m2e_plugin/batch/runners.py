"""Batch runners: one track through an extractor (never raising), and the three ways to run many -- inline, a
process pool (one model per worker; a crashed worker costs one track), and Ray actors."""

from __future__ import annotations

import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from m2e_plugin.batch.inputs import BatchError, Track
from m2e_plugin.batch.outputs import serialise, to_builtin
from m2e_plugin.signals import Terminated
from m2e_plugin.threads import pin_threads, torch_threads


def extract_track(extractor, track: Track, on_audio: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Run the extractor on ``track`` and return the JSON-safe pool (with provenance).

    Extractors with a ``compute_file(path)`` method (the built-ins) stream the file; others get the whole track
    decoded at their ``sample_rate`` through ``compute(audio, sr)``.

    ``on_audio(seconds)`` reports the position inside the file to extractors whose ``compute_file`` accepts it.

    Raises whatever decoding or the extractor raises (the batch runner records it).
    """
    compute_file = getattr(extractor, "compute_file", None)
    if callable(compute_file):  # streams the file: bounded memory for hours-long tracks
        pool = compute_file(track.audio, on_audio=on_audio) if on_audio and _accepts_on_audio(compute_file) \
            else compute_file(track.audio)
    else:  # plugins that only implement the protocol's compute(audio, sr) get the whole track
        from m2e_plugin.audio import load_audio

        samples, sr = load_audio(track.audio, target_sr=int(extractor.sample_rate))
        pool = extractor.compute(samples, sr)
    if not isinstance(pool, dict):
        raise TypeError(f"extractor {extractor.name!r} returned {type(pool).__name__}, not a dict")
    declared = set(extractor.outputs)
    undeclared = sorted(k for k in pool if k not in declared)
    if undeclared:
        raise ValueError(f"extractor {extractor.name!r} returned undeclared descriptors: {', '.join(undeclared[:5])}")
    pool = {str(k): to_builtin(v) for k, v in pool.items()}
    pool.update({"metadata.input.id": track.id, "metadata.input.path": track.path,
                 "metadata.extractor.name": extractor.name, "metadata.extractor.version": extractor.version})
    return pool


def _accepts_on_audio(function) -> bool:
    import inspect

    try:
        return "on_audio" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _error_record(track: Track, exc: BaseException, extractor_name: str) -> dict[str, Any]:
    return {"id": track.id, "path": track.path, "error": str(exc) or type(exc).__name__,
            "error_type": type(exc).__name__, "extractor": extractor_name,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _attempt(extractor, track: Track, on_audio=None) -> tuple[Track, str, Any, str | None]:
    """One track; never raises an ordinary exception (it becomes an error record). The last item is one warning
    for what the decoder wrote to fd 2 meanwhile (libmpg123 on a damaged MP3), or None."""
    from m2e_plugin.progress import decoder_warning, native_stderr_captured

    with native_stderr_captured() as noise:
        try:
            pool = extract_track(extractor, track, on_audio)
            serialise(pool, "json")  # fail here, recorded, rather than at write time
            outcome = track, "ok", pool
        except Exception as exc:
            outcome = track, "error", _error_record(track, exc, extractor.name)
    # a failed track is reported by its error record; what the decoder said while failing adds nothing
    return (*outcome, decoder_warning(track.path, noise) if outcome[1] == "ok" else None)


# Process-pool workers: one extractor (one model) per worker process, built once by the initializer.
_WORKER_EXTRACTOR = None
_WORKER_FATAL: str | None = None


def _worker_init(extractor_cls, options: dict[str, Any], threads: int | None) -> None:
    global _WORKER_EXTRACTOR, _WORKER_FATAL
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and lets running tracks finish
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's inherited handler: terminate() must kill
    except ValueError:  # not the main thread (some Ray actor setups): Ray handles signals there
        pass
    try:
        pin_threads(threads)
        _WORKER_EXTRACTOR = _build_extractor(extractor_cls, options)
    except Exception as exc:  # reported back through _worker_run: a model that cannot load stops the batch
        _WORKER_FATAL = f"{type(exc).__name__}: {exc}"


def _worker_run(track: Track) -> tuple[Track, str, Any, str | None]:
    if _WORKER_FATAL is not None:
        return track, "fatal", _WORKER_FATAL, None
    return _attempt(_WORKER_EXTRACTOR, track)


def _build_extractor(cls, options: dict[str, Any]):
    from m2e_plugin.plugins import check_extractor

    extractor = cls(**options)
    check_extractor(extractor)
    return extractor


class ExtractorUnavailable(BatchError):
    """The extractor could not be created (missing weights, bad options...): no track can be processed."""


class _RayWorker:
    """A Ray actor holding one extractor (one model per worker, like the process pool)."""

    def __init__(self, extractor_cls, options, threads):
        _worker_init(extractor_cls, options, threads)

    def run(self, track: Track):
        return _worker_run(track)


def _position_reporter(bar, track: Track):
    """``on_audio`` for one track: its position on the progress bar (None when progress is off)."""
    if bar is None or not bar.enabled:
        return None
    from m2e_plugin.audio import info
    from m2e_plugin.progress import native_stderr_captured

    with native_stderr_captured():  # the decoder's lines about this header: the extraction reports the file itself
        try:
            total = info(track.audio).duration
        except Exception:  # unreadable: the extraction reports it
            total = None
    return lambda seconds: bar.position(track.id, seconds, total)


def run_inline(todo, cls, options, threads, record, bar=None) -> None:
    with torch_threads(threads):  # the caller's process keeps its own setting afterwards
        try:
            extractor = _build_extractor(cls, options)
        except Exception as exc:
            raise ExtractorUnavailable(f"extractor {cls.name!r} could not be created: {type(exc).__name__}: "
                                       f"{exc}") from exc
        for track in todo:
            record(_attempt(extractor, track, _position_reporter(bar, track)))


def run_pool(todo, cls, options, jobs, threads, record, log) -> None:
    import multiprocessing as mp

    # spawn: a forked copy of a process that already runs torch threads can deadlock.
    context = mp.get_context("spawn")
    threads = threads or 1
    queue = list(reversed(todo))  # pop() from the end = input order
    suspects: set[str] = set()  # tracks in flight when a worker died: rerun one at a time to find the culprit
    while queue:
        executor = ProcessPoolExecutor(max_workers=min(jobs, len(queue)), mp_context=context,
                                       initializer=_worker_init, initargs=(cls, options, threads))
        running: dict = {}
        try:
            try:
                while queue or running:
                    # One track per worker in flight: a future the pool has queued cannot be cancelled, so more
                    # would run after a Ctrl-C (and be counted as running).
                    while queue and len(running) < jobs:
                        if queue[-1].id in suspects and running:
                            break  # a suspect runs alone
                        track = queue.pop()
                        running[executor.submit(_worker_run, track)] = track
                        if track.id in suspects:
                            break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        try:
                            outcome = fut.result()
                        except BrokenProcessPool:
                            raise
                        except Exception as exc:  # pickling problems and the like: this track only
                            outcome = (running[fut], "error", _error_record(running[fut], exc, cls.name), None)
                        running.pop(fut)
                        record(outcome)
            except KeyboardInterrupt as interrupt:
                if isinstance(interrupt, Terminated) or not running:
                    # SIGTERM stops now (a group SIGTERM has killed the workers already); nothing to finish.
                    _terminate_workers(executor)
                    running.clear()
                    raise
                log(f"m2e extract: interrupted; finishing {len(running)} running track(s) "
                    "(Ctrl-C again to stop now)")
                try:
                    for fut in list(running):
                        try:
                            outcome = fut.result()
                        except Exception:
                            outcome = None
                        if outcome is not None and outcome[1] != "fatal":
                            record(outcome)
                        running.pop(fut)
                except KeyboardInterrupt:
                    _terminate_workers(executor)
                raise KeyboardInterrupt from None
        except BrokenProcessPool as exc:
            # A worker died (killed, out of memory, crashed in native code). Alone in flight, the track is the
            # culprit and is recorded; otherwise every track in flight is retried on its own in a fresh pool.
            in_flight = list(running.values())
            running.clear()
            if len(in_flight) == 1:
                track = in_flight[0]
                suspects.discard(track.id)
                record((track, "error", _error_record(track, RuntimeError(
                    f"the worker process died while extracting this track ({exc})"), cls.name), None))
            else:
                suspects.update(t.id for t in in_flight)
                queue.extend(reversed(in_flight))
                log(f"m2e extract: a worker process died; retrying its {len(in_flight)} track(s) one at a time")
        finally:
            executor.shutdown(wait=True, cancel_futures=True)


def _terminate_workers(executor) -> None:
    for proc in list((getattr(executor, "_processes", None) or {}).values()):
        proc.terminate()


def run_ray(todo, cls, options, jobs, address, threads, record) -> None:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise BatchError("--backend ray needs Ray: pip install 'm2e[ray]'") from None
    started_here = False
    if not ray.is_initialized():
        kwargs = {"address": address} if address else {"num_cpus": jobs}
        ray.init(include_dashboard=False, logging_level="ERROR", **kwargs)
        started_here = True
    try:
        actor_cls = ray.remote(num_cpus=1)(_RayWorker)
        actors = [actor_cls.remote(cls, options, threads or 1) for _ in range(min(jobs, len(todo)))]
        pool = ActorPool(actors)
        for outcome in pool.map_unordered(lambda actor, track: actor.run.remote(track), todo):
            record(outcome)
    finally:
        if started_here:
            ray.shutdown()
