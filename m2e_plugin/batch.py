"""Batch extraction over large collections: input expansion, atomic per-track outputs, resume, error log,
process-pool or Ray parallelism, and Ctrl-C safety.

Layout of an output folder ``OUT``:

* ``OUT/<id>.json`` (or ``.yaml``): one descriptor pool per track, Essentia-style nested by the dotted names.
  ``<id>`` is the track's path relative to the folder it was found in (``Q1/song.mp3``) or its dataset track id.
* ``OUT/descriptors.csv`` / ``descriptors.parquet`` for the table formats: one row per track, rebuilt from the
  per-track parts in ``OUT/.m2e/parts/`` at the end of each run (and on Ctrl-C).
* ``OUT/errors.jsonl``: one JSON line per track that failed (``id``, ``path``, ``error``, ``error_type``, ...).
* ``OUT/.m2e/manifest.json``: the extractor, its version, options and format, so a re-run with different
  settings is refused instead of mixing results.

Every file is written to a temporary name and renamed into place, so an interrupted run leaves only complete
files. A re-run skips tracks that have an output and tracks listed in ``errors.jsonl`` (``retry_failed`` retries
them), so it does no new work once a collection is done.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from m2e_plugin.audio import AUDIO_EXTENSIONS

FORMATS = ("json", "yaml", "csv", "parquet")
TABLE_FORMATS = ("csv", "parquet")
LIST_EXTENSIONS = (".txt", ".lst", ".list", ".m3u", ".m3u8")
STATE_DIR = ".m2e"
ERRORS_FILE = "errors.jsonl"
TMP_SUFFIX = ".m2e-tmp"


class BatchError(ValueError):
    """The batch cannot start (bad inputs, output folder made with other settings...)."""


@dataclass(frozen=True)
class Track:
    """One unit of work: an id (names the output) and the audio path."""

    id: str
    path: str


@dataclass
class BatchResult:
    """Counts of one :func:`run_batch` call."""

    total: int = 0
    done: int = 0  # extracted in this run
    already_done: int = 0  # had an output before this run
    failed: int = 0  # failed in this run
    previously_failed: int = 0  # listed in errors.jsonl and not retried
    interrupted: bool = False
    seconds: float = 0.0
    output: str = ""
    errors_file: str = ""
    table: str | None = None
    ignored_files: int = 0  # files without an audio extension found in input folders
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every input track has an output."""
        return not self.interrupted and self.failed == 0 and self.previously_failed == 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "total": self.total, "done": self.done, "already_done": self.already_done,
                "failed": self.failed, "previously_failed": self.previously_failed,
                "interrupted": self.interrupted, "seconds": round(self.seconds, 3), "output": self.output,
                "errors_file": self.errors_file, "table": self.table, "ignored_files": self.ignored_files}


# ----------------------------------------------------------------------------------------------- input expansion

def expand_inputs(inputs: Sequence[str | os.PathLike], *, dataset: str | None = None, data_home: str | None = None,
                  dataset_version: str = "default", extensions: Sequence[str] = AUDIO_EXTENSIONS
                  ) -> tuple[list[Track], int]:
    """Turn CLI-style inputs into tracks.

    Parameters
    ----------
    inputs : sequence of paths
        Audio files (taken whatever their extension: a bad one becomes an error line, not a silent skip),
        folders (searched recursively for ``extensions``; hidden entries skipped), or text files of paths
        (``.txt``, ``.lst``, ``.list``, ``.m3u``, ``.m3u8``: one path a line, ``#`` comments, relative paths
        taken from the list's folder).
    dataset, data_home, dataset_version : str, optional
        A dataset from :mod:`m2e_plugin.loaders` (e.g. ``"fourq"``); its track ids name the outputs.

    Returns
    -------
    tracks : list of Track
        In input order, duplicates removed.
    ignored : int
        Files inside input folders skipped for not having an audio extension.

    Raises
    ------
    BatchError
        Two inputs would write the same output (a missing input is a track whose extraction fails).
    """
    exts = tuple(e.lower() for e in extensions)
    tracks: list[Track] = []
    loose: list[Path] = []
    ignored = 0
    for item in inputs:
        p = Path(os.fspath(item)).expanduser()
        if p.is_dir():
            found, skipped = _scan_folder(p, exts)
            ignored += skipped
            tracks += [Track(f.relative_to(p).as_posix(), str(f.resolve())) for f in found]
        elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            loose += _read_list(p)
        else:  # a file, or a missing path: that one track fails with "file not found", the others still run
            loose.append(p)
    if loose:
        absolute = [Path(os.path.abspath(f)) for f in loose]
        base = Path(os.path.commonpath([str(f.parent) for f in absolute]))
        tracks += [Track(f.relative_to(base).as_posix(), str(f)) for f in absolute]
    if dataset:
        tracks += _dataset_tracks(dataset, data_home, dataset_version)
    unique: dict[str, Track] = {}
    for t in tracks:
        _check_id(t.id)
        if t.id in unique:
            if unique[t.id].path == t.path:
                continue  # the same file named twice
            raise BatchError(f"two inputs would write the same output {t.id!r}: {unique[t.id].path} and {t.path} "
                             "(give their common parent folder instead)")
        unique[t.id] = t
    return list(unique.values()), ignored


def _scan_folder(folder: Path, exts: tuple[str, ...]) -> tuple[list[Path], int]:
    found, ignored = [], 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if name.lower().endswith(exts):
                found.append(Path(root) / name)
            else:
                ignored += 1
    return found, ignored


def _read_list(list_file: Path) -> list[Path]:
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchError(f"{list_file}: cannot read the list of paths ({exc})") from None
    paths = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        paths.append(p if p.is_absolute() else list_file.parent / p)
    return paths


def _dataset_tracks(name: str, data_home: str | None, version: str) -> list[Track]:
    from m2e_plugin import loaders

    try:
        ds = loaders.initialize(name, data_home=data_home, version=version)
        track_ids = list(ds.track_ids)
    except Exception as exc:  # unknown name, missing index or labels: nothing to extract
        raise BatchError(f"dataset {name!r} (data_home={data_home}): {exc}") from None
    tracks = []
    for tid in track_ids:
        track = ds.track(tid)
        path = getattr(track, "audio_path", None) or os.path.join(data_home or "", f"<no audio for {tid}>")
        tracks.append(Track(str(tid), str(path)))
    return tracks


def _check_id(track_id: str) -> None:
    parts = PurePosixPath(track_id).parts
    if not parts or track_id.startswith("/") or any(p in ("..", ".") for p in parts):
        raise BatchError(f"track id {track_id!r} cannot name an output file")


# ------------------------------------------------------------------------------------------------ output files

def output_path(out_dir: str | os.PathLike, track_id: str, fmt: str) -> Path:
    """Where the per-track output of ``track_id`` goes (the part file for table formats)."""
    out = Path(out_dir)
    if fmt in TABLE_FORMATS:
        return out / STATE_DIR / "parts" / f"{track_id}.json"
    return out / f"{track_id}.{fmt}"


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place (all or nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # includes KeyboardInterrupt: never leave the half-written file behind
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b.c": 1}`` -> ``{"a": {"b": {"c": 1}}}`` (Essentia pool layout); ``ValueError`` on a name clash."""
    root: dict[str, Any] = {}
    for key, value in flat.items():
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"descriptor {key!r} clashes with the value descriptor of its prefix {part!r}")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise ValueError(f"descriptor {key!r} is also the prefix of other descriptors")
        node[parts[-1]] = value
    return root


def to_builtin(value: Any) -> Any:
    """JSON/YAML-safe Python values: numpy scalars and arrays become floats/ints/lists, NaN/inf become None."""
    if isinstance(value, dict):
        return {str(k): to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_builtin(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"descriptor value of type {type(value).__name__} cannot be serialised")


def serialise(pool: dict[str, Any], fmt: str, *, flat: bool = False) -> str:
    """Text of one track's pool in ``json`` or ``yaml`` (table formats store JSON parts)."""
    data = pool if flat or fmt in TABLE_FORMATS else nest(pool)
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return json.dumps(data, indent=None if fmt in TABLE_FORMATS else 1, allow_nan=False) + "\n"


def read_errors(out_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Failed tracks recorded in ``OUT/errors.jsonl``, by id (the last line for an id wins)."""
    path = Path(out_dir) / ERRORS_FILE
    records: dict[str, dict[str, Any]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a hard kill: the track is simply retried
            continue
        if isinstance(rec, dict) and "id" in rec:
            records[str(rec["id"])] = rec
    return records


def build_table(out_dir: str | os.PathLike, fmt: str, tracks: Iterable[Track] | None = None) -> Path:
    """(Re)build ``OUT/descriptors.<fmt>`` from the per-track parts; rows in id order; written atomically."""
    out = Path(out_dir)
    parts_dir = out / STATE_DIR / "parts"
    wanted = None if tracks is None else {t.id for t in tracks}
    rows = []
    for part in sorted(parts_dir.rglob("*.json")) if parts_dir.is_dir() else []:
        pool = json.loads(part.read_text(encoding="utf-8"))
        if wanted is None or pool.get("metadata.input.id") in wanted:
            rows.append(pool)
    rows.sort(key=lambda r: str(r.get("metadata.input.id")))
    first = ["metadata.input.id", "metadata.input.path"]
    columns = first + sorted({k for r in rows for k in r} - set(first))
    target = out / f"descriptors.{fmt}"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else
                             json.dumps(r[c]) if isinstance(r.get(c), (list, dict)) else r[c] for c in columns])
        write_atomic(target, buf.getvalue())
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows],
                                     schema=None) if rows else pa.table({c: [] for c in columns})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        write_atomic(target, sink.getvalue().to_pybytes())
    return target


# ------------------------------------------------------------------------------------------------- extraction

def extract_track(extractor, track: Track) -> dict[str, Any]:
    """Run the extractor on ``track`` and return the JSON-safe pool (with provenance).

    Extractors with a ``compute_file(path)`` method (the built-ins) stream the file; others get the whole track
    decoded at their ``sample_rate`` through ``compute(audio, sr)``.

    Raises whatever decoding or the extractor raises (the batch runner records it).
    """
    compute_file = getattr(extractor, "compute_file", None)
    if callable(compute_file):  # streams the file: bounded memory for hours-long tracks
        pool = compute_file(track.path)
    else:  # plugins that only implement the protocol's compute(audio, sr) get the whole track
        from m2e_plugin.audio import load_audio

        samples, sr = load_audio(track.path, target_sr=int(extractor.sample_rate))
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


def _error_record(track: Track, exc: BaseException, extractor_name: str) -> dict[str, Any]:
    return {"id": track.id, "path": track.path, "error": str(exc) or type(exc).__name__,
            "error_type": type(exc).__name__, "extractor": extractor_name,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _attempt(extractor, track: Track) -> tuple[Track, str, Any]:
    """One track; never raises an ordinary exception (it becomes an error record)."""
    try:
        pool = extract_track(extractor, track)
        serialise(pool, "json")  # fail here, recorded, rather than at write time
        return track, "ok", pool
    except Exception as exc:
        return track, "error", _error_record(track, exc, extractor.name)


# Process-pool workers: one extractor (one model) per worker process, built once by the initializer.
_WORKER_EXTRACTOR = None
_WORKER_FATAL: str | None = None


def _worker_init(extractor_cls, options: dict[str, Any], threads: int | None) -> None:
    global _WORKER_EXTRACTOR, _WORKER_FATAL
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and lets running tracks finish
    except ValueError:  # not the main thread (some Ray actor setups): Ray handles signals there
        pass
    try:
        if threads:
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                os.environ[var] = str(threads)
            import torch

            torch.set_num_threads(threads)
        _WORKER_EXTRACTOR = _build_extractor(extractor_cls, options)
    except Exception as exc:  # reported back through _worker_run: a model that cannot load stops the batch
        _WORKER_FATAL = f"{type(exc).__name__}: {exc}"


def _worker_run(track: Track) -> tuple[Track, str, Any]:
    if _WORKER_FATAL is not None:
        return track, "fatal", _WORKER_FATAL
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


# -------------------------------------------------------------------------------------------------- the runner

def run_batch(tracks: Sequence[Track], out_dir: str | os.PathLike, *, extractor: str | type = "lite",
              options: dict[str, Any] | None = None, fmt: str = "json", jobs: int = 1, backend: str = "local",
              ray_address: str | None = None, retry_failed: bool = False, overwrite: bool = False,
              flat: bool = False, progress: bool | None = None, threads: int | None = None,
              log: Callable[[str], None] | None = None) -> BatchResult:
    """Extract descriptors for ``tracks`` into ``out_dir``; failures go to ``errors.jsonl`` and never stop the batch.

    Parameters
    ----------
    tracks : sequence of Track
        From :func:`expand_inputs`.
    out_dir : path
        Output folder (created). See the module docstring for its layout.
    extractor : str or extractor class
        A registered extractor name (``"lite"``, ``"music2emo"``, a plugin's) or a class following the protocol.
    options : dict
        Keyword arguments for the extractor class (``device``, ``threshold``, ``frames``...).
    fmt : {"json", "yaml", "csv", "parquet"}
        Per-track JSON/YAML files, or one CSV/Parquet table (``descriptors.<fmt>``).
    jobs : int
        Parallel workers (processes, or Ray actors), each with its own model; 1 runs in this process.
    backend : {"local", "ray"}
        ``ray`` runs on a Ray cluster: the one already initialised in this process, ``ray_address``, or a local
        one with ``jobs`` CPUs. Input paths must be readable by the Ray workers; results come back to this process,
        which writes every file.
    retry_failed : bool
        Retry tracks listed in ``errors.jsonl`` (by default a re-run skips them).
    overwrite : bool
        Recompute tracks that already have an output and accept different settings from the previous run.
    flat : bool
        JSON/YAML with flat dotted keys instead of the nested Essentia layout.
    progress : bool, optional
        Progress bar on stderr; ``None`` shows it when stderr is a terminal.
    threads : int, optional
        torch threads per worker; default: the extractor class's ``torch_threads`` if it declares one, else 1 when
        ``jobs > 1`` (workers share the cores) and torch's default for one job.

    Returns
    -------
    BatchResult
        ``result.ok`` is False when any track failed (now or in an earlier run) or the run was interrupted.
    """
    from m2e_plugin.plugins import get_extractor_class

    if fmt not in FORMATS:
        raise BatchError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if backend not in ("local", "ray"):
        raise BatchError(f"unknown backend {backend!r}; choose local or ray")
    if fmt == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise BatchError("--format parquet needs pyarrow: pip install 'm2e[parquet]'") from None
    jobs = max(1, int(jobs))
    options = dict(options or {})
    cls = get_extractor_class(extractor) if isinstance(extractor, str) else extractor
    # An extractor may declare the torch thread count that suits it (lite: 1, its ops are too small to split).
    threads = threads or getattr(cls, "torch_threads", None)
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(out, cls, options, fmt, overwrite)
    _sweep_tmp(out)

    started = time.perf_counter()
    result = BatchResult(total=len(tracks), output=str(out), errors_file=str(out / ERRORS_FILE))
    errors = read_errors(out)
    todo: list[Track] = []
    for t in tracks:
        if not overwrite and output_path(out, t.id, fmt).exists():
            result.already_done += 1
        elif t.id in errors and not (retry_failed or overwrite):
            result.previously_failed += 1
        else:
            todo.append(t)
    retried = {t.id for t in todo} & set(errors)
    if retried:  # their old error lines go; a new failure writes a new one
        _rewrite_errors(out, {k: v for k, v in errors.items() if k not in retried})
    if result.already_done or result.previously_failed:
        log(f"m2e extract: {result.already_done} already done, {result.previously_failed} failed before "
            f"(not retried{'' if retry_failed else '; use --retry-failed'}), {len(todo)} to do")

    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=f"m2e extract ({cls.name})", unit="track", file=sys.stderr,
               disable=(not sys.stderr.isatty()) if progress is None else not progress, dynamic_ncols=True)

    def record(outcome: tuple[Track, str, Any]) -> None:
        track, status, payload = outcome
        if status == "fatal":
            raise ExtractorUnavailable(f"extractor {cls.name!r} could not be created: {payload}")
        if status == "ok":
            write_atomic(output_path(out, track.id, fmt), serialise(payload, fmt, flat=flat))
            result.done += 1
        else:
            with open(out / ERRORS_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(payload) + "\n")  # one write per line: a whole line or none
            result.failed += 1
            result.failures.append(payload)
            bar.write(f"m2e extract: failed {track.id}: {payload['error']}", file=sys.stderr)
        bar.update(1)

    try:
        if todo:
            if backend == "ray":
                _run_ray(todo, cls, options, jobs, ray_address, threads, record)
            elif jobs == 1:
                _run_inline(todo, cls, options, threads, record)
            else:
                _run_pool(todo, cls, options, jobs, threads, record, log)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
        if fmt in TABLE_FORMATS and (result.done or not (out / f"descriptors.{fmt}").exists()):
            result.table = str(build_table(out, fmt, tracks))
        elif fmt in TABLE_FORMATS:
            result.table = str(out / f"descriptors.{fmt}")
        result.seconds = time.perf_counter() - started
    return result


def _run_inline(todo, cls, options, threads, record) -> None:
    previous = None
    if threads:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        try:
            extractor = _build_extractor(cls, options)
        except Exception as exc:
            raise ExtractorUnavailable(f"extractor {cls.name!r} could not be created: {type(exc).__name__}: "
                                       f"{exc}") from exc
        for track in todo:
            record(_attempt(extractor, track))
    finally:
        if previous is not None:  # the caller's process keeps its own setting
            import torch

            torch.set_num_threads(previous)


def _run_pool(todo, cls, options, jobs, threads, record, log) -> None:
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
                    while queue and len(running) < 2 * jobs:  # bounded: Ctrl-C cancels little
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
                            outcome = (running[fut], "error", _error_record(running[fut], exc, cls.name))
                        running.pop(fut)
                        record(outcome)
            except KeyboardInterrupt:
                for fut in [f for f in running if f.cancel()]:
                    running.pop(fut)
                if running:
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
                    for proc in list(getattr(executor, "_processes", {}).values()):
                        proc.terminate()
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
                    f"the worker process died while extracting this track ({exc})"), cls.name)))
            else:
                suspects.update(t.id for t in in_flight)
                queue.extend(reversed(in_flight))
                log(f"m2e extract: a worker process died; retrying its {len(in_flight)} track(s) one at a time")
        finally:
            executor.shutdown(wait=True, cancel_futures=True)


def _run_ray(todo, cls, options, jobs, address, threads, record) -> None:
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


# ------------------------------------------------------------------------------------------------ bookkeeping

def _check_manifest(out: Path, cls, options: dict[str, Any], fmt: str, overwrite: bool) -> None:
    manifest = {"extractor": cls.name, "extractor_version": cls.version, "format": fmt,
                "options": json.loads(json.dumps(options, default=str, sort_keys=True))}
    path = out / STATE_DIR / "manifest.json"
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        previous = None
    if previous is not None and previous != manifest and not overwrite:
        diff = ", ".join(f"{k}: {previous.get(k)!r} then, {manifest[k]!r} now" for k in manifest
                         if previous.get(k) != manifest[k])
        raise BatchError(f"{out} holds results made with other settings ({diff}); use another output folder "
                         "or --overwrite to recompute everything")
    if previous != manifest:
        write_atomic(path, json.dumps(manifest, indent=1) + "\n")


def _rewrite_errors(out: Path, records: dict[str, dict[str, Any]]) -> None:
    write_atomic(out / ERRORS_FILE, "".join(json.dumps(r) + "\n" for r in records.values()))


def _sweep_tmp(out: Path) -> None:
    """Remove temporary files a hard-killed earlier run may have left (they are never complete outputs)."""
    for tmp in out.rglob(f"*{TMP_SUFFIX}"):
        try:
            tmp.unlink()
        except OSError:
            pass
