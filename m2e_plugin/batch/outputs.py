"""Batch outputs: per-track files written atomically, the table formats, the error log and the resume manifest.

Every file is written to a temporary name and renamed into place, so an interrupted run leaves only complete
files; ``OUT/.m2e/manifest.json`` records the extractor and its effective settings so that a re-run with other
settings is refused instead of mixing results; ``OUT/.m2e/sources.jsonl`` remembers each finished track's source
size and modification time, so a re-run redoes the tracks whose file changed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from m2e_plugin.batch.inputs import BatchError, Track

FORMATS = ("json", "yaml", "csv", "parquet")
TABLE_FORMATS = ("csv", "parquet")
STATE_DIR = ".m2e"
ERRORS_FILE = "errors.jsonl"
SOURCES_FILE = "sources.jsonl"
# Options that change how a result is computed, never what it is: left out of the resume comparison.
RESULT_NEUTRAL_OPTIONS = ("device", "batch_windows")
TMP_SUFFIX = ".m2e-tmp"


def output_path(out_dir: str | os.PathLike, track_id: str, fmt: str) -> Path:
    """Where the per-track output of ``track_id`` goes (the part file for table formats)."""
    out = Path(out_dir)
    if fmt in TABLE_FORMATS:
        return out / STATE_DIR / "parts" / f"{track_id}.json"
    return out / f"{track_id}.{fmt}"


def frames_path(out_dir: str | os.PathLike, track_id: str, fmt: str) -> Path:
    """Where the frames pool of ``track_id`` goes: ``OUT/<id>.frames.json`` (``.yaml`` with the yaml format)."""
    return Path(out_dir) / f"{track_id}.frames.{'yaml' if fmt == 'yaml' else 'json'}"


def split_pool(pool: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(descriptors, frames, provenance)``: the keys an extractor prefixed ``frames.`` / ``provenance.`` go to
    their own pool / the run manifest, prefix removed (:mod:`m2e_plugin.pools`)."""
    from m2e_plugin.pools import FRAMES_PREFIX, PROVENANCE_PREFIX

    descriptors, frames, provenance = {}, {}, {}
    for key, value in pool.items():
        if key.startswith(FRAMES_PREFIX):
            frames[key[len(FRAMES_PREFIX):]] = value
        elif key.startswith(PROVENANCE_PREFIX):
            provenance[key[len(PROVENANCE_PREFIX):]] = value
        else:
            descriptors[key] = value
    return descriptors, frames, provenance


RUNS_FILE = "runs.jsonl"


def write_run(out: Path, run: dict[str, Any]) -> None:
    """Add or replace (by ``run["run"]``) this run's line in ``OUT/runs.jsonl``: the run manifest, provenance
    written once per run (versions, command, settings, the model card) instead of into every record."""
    path = out / RUNS_FILE
    lines = []
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        pass
    kept = []
    for line in lines:
        try:
            if json.loads(line).get("run") == run["run"]:
                continue
        except (json.JSONDecodeError, AttributeError):  # a line cut by a hard kill: dropped
            continue
        kept.append(line)
    kept.append(json.dumps(to_builtin(run), sort_keys=False))
    write_atomic(path, "\n".join(kept) + "\n")


_TMP_COUNTER = itertools.count()


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place (all or nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A short name, not the target's plus a suffix: a track whose output name fits the file system's 255 bytes
    # must not fail because its temporary name does not.
    tmp = path.with_name(f".{os.getpid()}-{next(_TMP_COUNTER)}{TMP_SUFFIX}")
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

        try:
            table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows],
                                         schema=None) if rows else pa.table({c: [] for c in columns})
        except pa.ArrowException:  # an extractor whose descriptor changes type between tracks (str, then float)
            raise BatchError(f"cannot build {target.name}: {_mixed_column(rows, columns)}") from None
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        write_atomic(target, sink.getvalue().to_pybytes())
    return target


def _mixed_column(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Which column Arrow cannot type, with the tracks that disagree (for :func:`build_table`'s error)."""
    import pyarrow as pa

    for c in columns:
        try:
            pa.array([r.get(c) for r in rows])
        except pa.ArrowException:
            kinds: dict[str, str] = {}
            for r in rows:
                if r.get(c) is not None:
                    kinds.setdefault(type(r[c]).__name__, str(r.get("metadata.input.id")))
            found = ", ".join(f"{kind} in {tid!r}" for kind, tid in kinds.items())
            return (f"descriptor {c!r} has values of different types across tracks ({found}), and a parquet column "
                    "takes one type; the extractor should return one type per descriptor (or use --format csv)")
    return "the descriptors cannot be stored as parquet columns"


def effective_settings(cls, options: dict[str, Any]) -> dict[str, Any]:
    """The settings an extractor class will really use with ``options``: what resume compares, so that spelling out
    a default (``--threshold 0.5``) is the same run as leaving it out.

    An extractor class may answer itself (``cls.effective_settings(options)``, the built-ins do: they fill in their
    model's window and hop); otherwise its keyword defaults are merged under the given options. Options in
    :data:`RESULT_NEUTRAL_OPTIONS` (the compute device...) are left out.
    """
    import inspect

    own = getattr(cls, "effective_settings", None)
    if callable(own):
        settings = dict(own(dict(options)))
    else:
        try:
            parameters = inspect.signature(cls).parameters.values()
        except (TypeError, ValueError):
            parameters = ()
        settings = {p.name: p.default for p in parameters
                    if p.default is not inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_KEYWORD}
        settings.update(options)
    for name in RESULT_NEUTRAL_OPTIONS:
        settings.pop(name, None)
    # ints and floats compare by value (--window 10 == 10.0); JSON round trip for anything else
    settings = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in settings.items()}
    return json.loads(json.dumps(settings, default=str, sort_keys=True))


def check_manifest(out: Path, cls, options: dict[str, Any], fmt: str, overwrite: bool, flat: bool = False) -> str:
    """Refuse a folder holding results made with other settings (unless ``overwrite``); record this run's. Returns
    the settings' fingerprint, recorded with each track's source so that a track made with other settings (kept
    from before an ``--overwrite`` that changed them) is redone when it is given again."""
    manifest = {"extractor": cls.name, "extractor_version": cls.version, "format": fmt,
                "settings": effective_settings(cls, options)}
    if flat and fmt not in TABLE_FORMATS:
        # --flat changes the files' layout: a resumed run must not mix nested and flat files in one folder. Only
        # recorded when set, so folders made before it was kept (nested) still resume.
        manifest["layout"] = "flat"
    path = out / STATE_DIR / "manifest.json"
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        previous = None
    if previous is not None and previous != manifest and not overwrite and _unversioned_same_model(out, previous,
                                                                                                  manifest):
        manifest = previous  # kept as it is: its fingerprint is the one its tracks carry
    if previous is not None and previous != manifest and not overwrite:
        diff = ", ".join(f"{k}: {previous.get(k)!r} then, {manifest.get(k)!r} now"
                         for k in {**manifest, **previous} if previous.get(k) != manifest.get(k))
        raise BatchError(f"{out} holds results made with other settings ({diff}); use another output folder "
                         "or --overwrite to recompute everything")
    if previous != manifest:
        write_atomic(path, json.dumps(manifest, indent=1) + "\n")
    return settings_fingerprint(manifest)


def settings_fingerprint(manifest: dict) -> str:
    """The fingerprint of a folder's manifest that each finished track records (:func:`check_manifest`)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _unversioned_same_model(out: Path, previous: dict, manifest: dict) -> bool:
    """A folder made before the model's version was part of the settings (m2e 0.1.0 before this check), by the
    version in use now: every run in its run log names that version in its model card. Refusing it would make an
    upgraded m2e recompute a whole catalogue that it would compute the same."""
    version = manifest.get("settings", {}).get("model_version")
    old_settings = previous.get("settings", {})
    if version is None or "model_version" in old_settings or \
            {**previous, "settings": {**old_settings, "model_version": version}} != manifest:
        return False
    try:
        runs = [json.loads(line) for line in (out / RUNS_FILE).read_text(encoding="utf-8").splitlines()
                if line.strip()]
    except (OSError, json.JSONDecodeError):
        return False
    # a run that loaded no model (every track already done, or stopped before) made nothing and names none
    versions = {str(run["model"]["model_card"].get("version")) for run in runs
                if isinstance(run.get("model"), dict) and isinstance(run["model"].get("model_card"), dict)}
    return versions == {str(version)}


def source_stamp(path: str | os.PathLike) -> dict[str, int] | None:
    """``{"size", "mtime_ns"}`` of a source file (None when it cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def read_sources(out: Path) -> dict[str, dict[str, Any]]:
    """The stamp each finished track's source had when it was processed (``size``, ``mtime_ns``) and the settings
    fingerprint it was made with (``settings``; absent in folders from before it was kept), by id (the last line
    for an id wins)."""
    records: dict[str, dict[str, Any]] = {}
    try:
        text = (out / STATE_DIR / SOURCES_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        try:
            rec = json.loads(line)
            record = {"size": int(rec["size"]), "mtime_ns": int(rec["mtime_ns"])}
            if isinstance(rec.get("settings"), str):
                record["settings"] = rec["settings"]
            records[str(rec["id"])] = record
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):  # a line cut by a hard kill
            continue
    return records


def stamp_of(record: dict[str, Any]) -> dict[str, int]:
    """The source stamp part of a :func:`read_sources` record."""
    return {"size": record["size"], "mtime_ns": record["mtime_ns"]}


#: The stamp of a failed track whose source could not be read (missing): any readable file later differs from it.
ABSENT_SOURCE = {"size": -1, "mtime_ns": -1}


def append_source(out: Path, track_id: str, stamp: dict[str, int] | None, settings: str | None = None) -> None:
    """Remember the stamp of a finished track's source and the settings fingerprint it was made with (one line,
    one write: whole or absent)."""
    if stamp is None:
        return
    path = out / STATE_DIR / SOURCES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": track_id, **stamp, **({"settings": settings} if settings else {})}) + "\n")


def compact_sources(out: Path, sources: dict[str, dict[str, Any]]) -> None:
    """Rewrite the sources index with one line per id (re-runs append; this keeps it the collection's size)."""
    write_atomic(out / STATE_DIR / SOURCES_FILE, "".join(json.dumps({"id": k, **v}) + "\n" for k, v in sources.items()))


def rewrite_errors(out: Path, records: dict[str, dict[str, Any]]) -> None:
    write_atomic(out / ERRORS_FILE, "".join(json.dumps(r) + "\n" for r in records.values()))


def sweep_tmp(out: Path) -> None:
    """Remove temporary files a hard-killed earlier run may have left (they are never complete outputs)."""
    for tmp in out.rglob(f"*{TMP_SUFFIX}"):
        try:
            tmp.unlink()
        except OSError:
            pass
