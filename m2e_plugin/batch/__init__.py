"""Batch extraction over large collections: input expansion, atomic per-track outputs, resume, error log,
process-pool or Ray parallelism, and Ctrl-C safety.

Layout of an output folder ``OUT``:

* ``OUT/<id>.json`` (or ``.yaml``): one descriptor pool per track, Essentia-style nested by the dotted names.
  ``<id>`` is the track's path relative to the folder it was found in (``Q1/song.mp3``) or its dataset track id.
* ``OUT/descriptors.csv`` / ``descriptors.parquet`` for the table formats: one row per track, rebuilt from the
  per-track parts in ``OUT/.m2e/parts/`` at the end of each run (and on Ctrl-C).
* ``OUT/<id>.frames.json`` (``.yaml``): the frames pool of a track (per-window series), with ``frames=True``.
* ``OUT/runs.jsonl``: the run manifest, one line per run: id, start and end, status, m2e/Python/torch versions,
  command, extractor, effective settings, the model card, counts. Records name their run (``metadata.run``).
* ``OUT/errors.jsonl``: one JSON line per track that failed (``id``, ``path``, ``error``, ``error_type``, ...).
* ``OUT/.m2e/manifest.json``: the extractor, its version, its effective settings (defaults filled in, the compute
  device left out) and format, so a re-run with different settings is refused instead of mixing results, while
  spelling out a default (``--threshold 0.5``) is the same run.
* ``OUT/.m2e/sources.jsonl``: size and modification time of each finished track's source.

Every file is written to a temporary name and renamed into place, so an interrupted run leaves only complete
files. A re-run skips tracks that have an output and tracks listed in ``errors.jsonl`` (``retry_failed`` retries
them), so it does no new work once a collection is done -- except for tracks whose source file changed (another
size or modification time): those are redone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from m2e_plugin.audio import STDIN
from m2e_plugin.batch.inputs import LIST_EXTENSIONS, BatchError, Track, expand_inputs, spool_streams
from m2e_plugin.batch.outputs import (ABSENT_SOURCE, ERRORS_FILE, FORMATS, STATE_DIR, TABLE_FORMATS, TMP_SUFFIX,
                                      append_source, build_table, check_manifest, compact_sources, effective_settings,
                                      frames_path, nest, output_path, read_errors, read_sources, rewrite_errors,
                                      serialise, source_stamp, split_pool, stamp_of, sweep_tmp, to_builtin,
                                      write_atomic, write_run)
from m2e_plugin.batch.runners import (ExtractorUnavailable, _error_record, extract_track, run_inline, run_pool,
                                      run_ray)

__all__ = ["BatchError", "BatchResult", "ExtractorUnavailable", "FORMATS", "LIST_EXTENSIONS", "OutputUnwritable",
           "TABLE_FORMATS", "Track", "build_table", "exclusive_use", "expand_inputs", "extract_track", "nest",
           "output_path", "read_errors", "run_batch", "serialise", "spool_streams", "to_builtin", "write_atomic",
           "ERRORS_FILE", "STATE_DIR", "TMP_SUFFIX"]


@dataclass
class BatchResult:
    """Counts of one :func:`run_batch` call."""

    total: int = 0
    done: int = 0  # extracted in this run
    already_done: int = 0  # had an output before this run
    failed: int = 0  # failed in this run
    previously_failed: int = 0  # listed in errors.jsonl and not retried
    source_changed: int = 0  # finished before, redone because the source file changed since
    settings_changed: int = 0  # finished before with other settings (before an --overwrite that changed them)
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
                "source_changed": self.source_changed, "settings_changed": self.settings_changed,
                "interrupted": self.interrupted, "seconds": round(self.seconds, 3), "output": self.output,
                "errors_file": self.errors_file, "table": self.table, "ignored_files": self.ignored_files}


class OutputUnwritable(BatchError):
    """The output folder stopped taking results mid-batch (a full or failing disk); finished tracks are kept."""


def run_batch(tracks: Sequence[Track], out_dir: str | os.PathLike, *, extractor: str | type = "lite",
              options: dict[str, Any] | None = None, fmt: str = "json", jobs: int = 1, backend: str = "local",
              ray_address: str | None = None, retry_failed: bool = False, overwrite: bool = False,
              flat: bool = False, progress: str | bool | None = "auto", threads: int | None = None,
              log: Callable[[str], None] | None = None, command: str | None = None, quiet: bool = False,
              ignored_files: int = 0) -> BatchResult:
    """Extract descriptors for ``tracks`` into ``out_dir``; failures go to ``errors.jsonl`` and never stop the batch.

    Parameters
    ----------
    tracks : sequence of Track
        From :func:`expand_inputs`, standard input and pipes copied by :func:`spool_streams`.
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
    progress : {"auto", "always", "never"}
        Progress on stderr (:class:`m2e_plugin.progress.Progress`): ``auto`` only on a terminal, ``always`` also
        as plain lines in a log, ``never``. (``True``/``False``/``None`` mean always/never/auto.)
    threads : int, optional
        torch threads per worker; default: the extractor class's ``torch_threads`` if it declares one, else 1 when
        ``jobs > 1`` (workers share the cores) and torch's default for one job.
    command : str, optional
        The command line, for the run manifest (``OUT/runs.jsonl``).
    quiet : bool
        No status line (how many tracks were already done); warnings and failures are still logged.
    ignored_files : int
        Files without an audio extension that :func:`expand_inputs` left out: counted in the summary and the run
        record.

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
    if any(t.path == STDIN and t.copy is None for t in tracks):  # a worker would read its own, empty, stdin
        raise BatchError("standard input (-) must be copied before the batch: tracks = spool_streams(tracks, stack)")
    jobs = max(1, int(jobs))
    options = dict(options or {})
    cls = get_extractor_class(extractor) if isinstance(extractor, str) else extractor
    options = accepted_options(cls, options)
    # An extractor may declare the torch thread count that suits it (lite: 1, its ops are too small to split).
    threads = threads or getattr(cls, "torch_threads", None)
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    status = (lambda text: None) if quiet else log
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BatchError(f"{out}: the output path (or a folder above it) is a file, not a folder for the results"
                         ) from None
    except OSError as exc:
        raise BatchError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    check_writable(out)
    with exclusive_use(out):  # a second run into the same folder would redo every track
        settings = check_manifest(out, cls, options, fmt, overwrite, flat)
        sweep_tmp(out)

        started = time.perf_counter()
        result = BatchResult(total=len(tracks), output=str(out), errors_file=str(out / ERRORS_FILE),
                             ignored_files=int(ignored_files))
        errors = read_errors(out)
        sources = read_sources(out)
        stamps = {t.id: source_stamp(t.copy or t.path) for t in tracks}
        todo, changed_ids = _plan(tracks, out, fmt, settings, errors, sources, stamps, overwrite, retry_failed,
                                  result)
        if sources:
            compact_sources(out, sources)
        retried = {t.id for t in todo} & set(errors)
        run = _run_record(cls, options, fmt, command)
        write_run(out, run)
        if retried:  # their old error lines go; a new failure writes a new one
            rewrite_errors(out, {k: v for k, v in errors.items() if k not in retried})
        if result.already_done or result.previously_failed or result.source_changed or result.settings_changed:
            redone = "".join(f"{n} redone ({why}), " for n, why in (
                (result.source_changed, "source file changed"), (result.settings_changed, "made with other settings"))
                if n)
            status(f"m2e extract: {result.already_done} already done, {result.previously_failed} failed before "
                   f"(not retried{'' if retry_failed else '; use --retry-failed'}), {redone}{len(todo)} to do")

        from m2e_plugin.progress import Progress

        mode = {None: "auto", True: "always", False: "never"}.get(progress, progress)
        bar = Progress(len(todo), f"m2e extract ({cls.name})", unit="track", mode=mode)

        unwritable: list[OutputUnwritable] = []

        def record(outcome: tuple[Track, str, Any, str | None]) -> None:
            try:
                try:
                    _record(outcome)
                except OSError as exc:
                    if exc.errno != errno.ENAMETOOLONG or outcome[1] != "ok":
                        raise
                    # The track's own name is too long for an output name (<name>.json in 255 bytes): its error
                    # line, as for an unreadable file; stopping here made it stop every re-run of the batch.
                    track = outcome[0]
                    changed_ids.discard(track.id)  # no old output can exist under that name
                    _record((track, "error", _error_record(track, OSError(
                        f"its output file name is too long for the file system ({exc.strerror}); shorten the "
                        "file's name"), cls.name), None))
            except OSError as exc:  # a full or failing disk: stop, keeping every track already written
                unwritable.append(OutputUnwritable(
                    f"cannot write the results to {out}: {exc.strerror or exc}; the {result.done} track(s) finished "
                    "in this run are kept, run again to resume"))
                raise unwritable[-1] from None

        def _record(outcome: tuple[Track, str, Any, str | None]) -> None:
            track, status, payload, warning = outcome
            if warning:
                bar.write(f"m2e extract: {warning}")
            if status == "fatal":
                raise ExtractorUnavailable(f"extractor {cls.name!r} could not be created: {payload}")
            if status == "ok":
                pool, frames, provenance = split_pool(payload)
                if provenance and "model" not in run:  # the loaded model's card, once per run
                    run["model"] = provenance
                    write_run(out, run)
                stamp = stamps[track.id] or {}
                # A copy of standard input or a pipe has a size, but its time is when it was copied: none is given.
                pool.update({"metadata.run": run["run"], "metadata.input.size": stamp.get("size"),
                             "metadata.input.mtime": _iso(stamp["mtime_ns"] / 1e9) if stamp and track.copy is None
                             else None})
                if frames:  # before the pool: a track counts as done when its pool exists
                    write_atomic(frames_path(out, track.id, fmt),
                                 serialise({**frames, "metadata.input.id": track.id, "metadata.run": run["run"]},
                                           "yaml" if fmt == "yaml" else "json", flat=flat))
                write_atomic(output_path(out, track.id, fmt), serialise(pool, fmt, flat=flat))
                result.done += 1
                append_source(out, track.id, stamps[track.id], settings)
            else:
                with open(out / ERRORS_FILE, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(payload) + "\n")  # one write per line: a whole line or none
                result.failed += 1
                result.failures.append(payload)
                # A source that could not even be read is remembered as absent: when it appears, it is a change.
                append_source(out, track.id, stamps[track.id] or ABSENT_SOURCE)
                if track.id in changed_ids:  # the old output describes another file, or other settings
                    output_path(out, track.id, fmt).unlink(missing_ok=True)
                bar.write(f"m2e extract: failed {track.id}: {payload['error']}")
            bar.update(1, failed=status != "ok")

        table_error: OutputUnwritable | None = None
        try:
            if todo:
                if backend == "ray":
                    run_ray(todo, cls, options, jobs, ray_address, threads, record)
                elif jobs == 1:
                    run_inline(todo, cls, options, threads, record, bar)
                else:
                    run_pool(todo, cls, options, jobs, threads, record, log)
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            bar.close()
            if fmt in TABLE_FORMATS:  # always: the rows are this command's inputs, even when nothing was to do
                try:
                    result.table = str(build_table(out, fmt, tracks))
                except BatchError as exc:  # a table Arrow cannot type: a clear error and a closed run record,
                    # not a traceback leaving the run "running"; each track's descriptors stay in the parts
                    table_error = OutputUnwritable(f"{exc}; the descriptors of the {result.done + result.already_done}"
                                                   f" finished track(s) are kept in {out / STATE_DIR / 'parts'}")
                    unwritable.append(table_error)
            result.seconds = time.perf_counter() - started
            run.update(status="interrupted" if result.interrupted else "failed" if unwritable else "finished",
                       finished=_iso(time.time()), counts=result.as_dict())
            if unwritable:  # the manifest says why the run failed, not only that it did
                run["error"] = str(unwritable[0])
            try:
                write_run(out, run)
            except OSError:
                if not unwritable:  # else the disk's first error is the one to report
                    raise
        if table_error is not None:
            raise table_error
        return result


def _plan(tracks, out: Path, fmt: str, settings: str, errors: dict, sources: dict, stamps: dict, overwrite: bool,
          retry_failed: bool, result: BatchResult) -> tuple[list[Track], set[str]]:
    """The tracks to do now and, among them, those whose old output is stale; counts the others in ``result``."""
    todo: list[Track] = []
    changed_ids: set[str] = set()
    for t in tracks:
        # A source whose size or mtime changed since its track was finished (or failed) is done again. Outputs
        # from before the stamps were kept have no stamp: they are trusted.
        record = sources.get(t.id)
        changed = record is not None and stamps[t.id] is not None and stamp_of(record) != stamps[t.id]
        # An output made with other settings (kept from before an --overwrite that changed them) is done again.
        stale = (record is not None and record.get("settings") not in (None, settings)
                 and os.path.exists(output_path(out, t.id, fmt)))
        if (changed or stale) and not overwrite:
            result.source_changed += changed
            result.settings_changed += stale and not changed
            changed_ids.add(t.id)
            todo.append(t)
        # os.path.exists: False, not OSError, for a name too long to exist (Path.exists raises it on Python 3.11)
        elif not overwrite and os.path.exists(output_path(out, t.id, fmt)):
            result.already_done += 1
        elif t.id in errors and not (retry_failed or overwrite):
            result.previously_failed += 1
        else:
            todo.append(t)
    return todo, changed_ids


# Compute hints that never change a result: dropped for an extractor that does not take them.
NEUTRAL_OPTIONS = ("device",)


def accepted_options(cls, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` that ``cls(**options)`` accepts; ``--device`` is dropped for an extractor without one, and
    any other option it does not take is a :class:`BatchError` naming it (before any work, not per track)."""
    import inspect

    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no introspectable signature: let the constructor decide
        return options
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return options
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    kept = {k: v for k, v in options.items() if k in named or k not in NEUTRAL_OPTIONS}
    unknown = sorted(set(kept) - named)
    if unknown:
        raise BatchError(f"extractor {cls.name!r} does not take the option(s) {', '.join(unknown)} "
                         f"(it takes: {', '.join(sorted(named)) or 'none'})")
    return kept


LOCK_FILE = "lock"


@contextlib.contextmanager
def exclusive_use(out: Path):
    """Hold ``OUT/.m2e/lock`` (an advisory lock the OS drops when the process ends, however it ends) for one run:
    two runs into one folder would each redo every track, and one's start-up sweep could delete the other's
    half-written files. A second run is refused, naming the first's process."""
    lock_path = out / STATE_DIR / LOCK_FILE
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+", encoding="utf-8") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory lock; concurrent runs are the user's to avoid
            yield
            return
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise BatchError(f"{out} is in use by another m2e extract run ({holder}); wait for it to finish or "
                             "choose another output folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, started {_iso(time.time())}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def check_writable(out: Path) -> None:
    """Refuse, before any work, an output folder that exists but cannot be written (a read-only mount, no
    permission): the alternative is a traceback at the first result."""
    probe = out / STATE_DIR / f".writable.{os.getpid()}"
    try:
        write_atomic(probe, b"")
        probe.unlink()
    except OSError as exc:
        raise BatchError(f"cannot write to the output folder {out}: {exc.strerror or exc}") from None


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _run_record(cls, options: dict[str, Any], fmt: str, command: str | None) -> dict[str, Any]:
    """The run manifest's line for this run, as known at its start (the model card is added by the first track)."""
    import platform
    import uuid
    from importlib import metadata

    from m2e_plugin import __version__

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    now = time.time()
    return {"run": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + uuid.uuid4().hex[:6], "started": _iso(now),
            "status": "running", "command": command,
            "versions": {"m2e": __version__, "python": platform.python_version(), "torch": version("torch"),
                         "numpy": version("numpy"), "soundfile": version("soundfile")},
            "platform": platform.platform(),
            "extractor": {"name": cls.name, "version": cls.version, "class": f"{cls.__module__}.{cls.__qualname__}"},
            "format": fmt, "settings": effective_settings(cls, options)}
