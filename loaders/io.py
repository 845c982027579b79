"""Reading the files datasets are distributed as (mirdata keeps this in ``io``): CSV/TSV label files with tolerant
column matching, typed cells, track ids, the one metadata join, split id lists, and audio.

Every parse error is a :class:`DatasetFileError` naming the file, row and column.
"""

from __future__ import annotations

import csv
import io
import math
import os
from importlib import resources
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

#: Split names returned by ``get_track_splits``.
SPLIT_NAMES = ("train", "validation", "test")


class DatasetFileError(ValueError):
    """A dataset file that exists but cannot be parsed: names the file and the cause."""

    def __init__(self, path, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


def file_exists(path: Optional[str]) -> bool:
    """True when ``path`` names an existing regular file."""
    return bool(path) and os.path.isfile(path)


def read_csv_dicts(path: str, *, delimiter: str = ",") -> List[Dict[str, str]]:
    """Read a publisher CSV into a list of ``{column: value}`` dicts with stripped names and values.

    Handles what the real files do: a UTF-8 BOM, CRLF line ends, latin-1 bytes (tried after UTF-8 fails), space-padded
    fixed-width columns (DEAM) and TAB-padded quoted fields (EmoMusic's songs_info.csv). Rows that are entirely empty
    are skipped.

    Raises:
        FileNotFoundError: if ``path`` does not exist
        DatasetFileError: if the file has no header row

    """
    return [row for _, row in read_csv_lines(path, delimiter=delimiter)]


def read_csv_lines(path: str, *, delimiter: str = ",") -> List[Tuple[int, Dict[str, str]]]:
    """:func:`read_csv_dicts` with the line number of each row (1 = the header), for errors that name the line."""
    raw = _read_text(path)
    # StringIO(newline="") leaves CRLF and quoted line breaks to csv; str.splitlines would also split at \x85 & co.
    reader = csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter, skipinitialspace=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DatasetFileError(path, "file is empty (expected a header row)") from None
    rows = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        values = [v.strip() for v in values]
        if len(values) < len(header):
            values += [""] * (len(header) - len(values))
        rows.append((reader.line_num, dict(zip(header, values))))
    return rows


def _read_text(path: str) -> str:
    with open(path, "rb") as fh:
        data = fh.read()
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DatasetFileError(path, "cannot decode text")  # pragma: no cover  (latin-1 decodes any bytes)


def find_column(row_keys: Iterable[str], aliases: Sequence[str], path: str, what: str) -> str:
    """Return the first column among ``aliases`` present in ``row_keys`` (case- and space-insensitive)."""
    norm = {k.lower().replace(" ", ""): k for k in row_keys}
    for alias in aliases:
        key = norm.get(alias.lower().replace(" ", ""))
        if key is not None:
            return key
    raise DatasetFileError(path, f"no {what} column (looked for {', '.join(aliases)}; found {', '.join(row_keys)})")


def optional_column(row_keys: Iterable[str], aliases: Sequence[str]) -> Optional[str]:
    """Like :func:`find_column` but returns None when no alias is present."""
    norm = {k.lower().replace(" ", ""): k for k in row_keys}
    for alias in aliases:
        key = norm.get(alias.lower().replace(" ", ""))
        if key is not None:
            return key
    return None


def parse_float(value: str, path: str, row_id: str, column: str) -> float:
    """Parse a numeric cell; a bad cell raises :class:`DatasetFileError` naming file, row and column."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise DatasetFileError(path, f"row {row_id!r}, column {column!r}: {value!r} is not a number") from None
    if not math.isfinite(out):
        raise DatasetFileError(path, f"row {row_id!r}, column {column!r}: value is {value!r}")
    return out


def normalise_id(value: str) -> str:
    """Canonical track id for numeric ids: ``"0002"``/``"2.0"``/``" 2"`` -> ``"2"``; other ids are stripped only."""
    value = value.strip()
    try:
        as_float = float(value)
    except ValueError:
        return value
    if as_float.is_integer():
        return str(int(as_float))
    return value


def check_nine_point(value: float, path: str, row_id: str, column: str) -> float:
    """Raise :class:`DatasetFileError` when a value meant to be on the 1-9 scale is not."""
    if not 1.0 <= value <= 9.0:
        raise DatasetFileError(path, f"row {row_id!r}, column {column!r}: {value} is outside the 1-9 scale")
    return value


def join_metadata(meta: Dict[str, dict], path: str, *, id_columns: Sequence[str], fields: Mapping[str, Sequence[str]],
                  convert: Optional[Mapping[str, Callable]] = None, require_id: bool = True) -> None:
    """Copy per-track fields of a metadata CSV into ``meta`` (``{track_id: dict}``): the loaders' one metadata join.

    Args:
        meta (dict): track id -> metadata dict, updated in place; rows of ids not in it are ignored
        path (str): the CSV/TSV file
        id_columns (list): aliases of the id column (ids are compared through :func:`normalise_id`)
        fields (dict): metadata key -> aliases of its column; absent columns and empty cells are skipped
        convert (dict or None): metadata key -> ``f(value, path, track_id, column)`` for typed fields
        require_id (bool): a file without an id column is an error (True) or skipped (False)

    """
    rows = read_csv_dicts(path)
    if not rows:
        return
    keys = list(rows[0].keys())
    id_col = find_column(keys, id_columns, path, "song id") if require_id else optional_column(keys, id_columns)
    if id_col is None:
        return
    columns = {key: optional_column(keys, aliases) for key, aliases in fields.items()}
    convert = convert or {}
    for row in rows:
        track_id = normalise_id(row[id_col])
        entry = meta.get(track_id)
        if entry is None:
            continue
        for key, col in columns.items():
            if col and row.get(col):
                entry[key] = convert[key](row[col], path, track_id, col) if key in convert else row[col]


def load_audio(fhandle: str) -> Tuple[np.ndarray, int]:
    """Load a dataset audio file as mono float32 at its native sample rate.

    Args:
        fhandle (str): path to an audio file

    Returns:
        * np.ndarray - mono audio signal, float32
        * int - sample rate of the file

    Raises:
        m2e_plugin.audio.AudioError: if the file cannot be decoded (names the file and the cause)

    """
    from m2e_plugin.audio import load_audio as _load

    return _load(fhandle)


def check_audio_file(path: str, decode: bool = False, warnings: Optional[list] = None) -> Optional[str]:
    """Return None when ``path`` is usable audio, else the cause as text.

    The test is :func:`m2e_plugin.audio.check_audio`, the one every face of m2e applies. With ``decode=False``
    only the header is read (fast); ``decode=True`` decodes the whole file: damaged or cut files whose audio
    partly decodes are usable, and what was lost goes to ``warnings`` (logged when it is None).
    """
    from m2e_plugin.audio import AudioError, check_audio

    try:
        check_audio(path, decode=decode, warnings=warnings)
    except AudioError as exc:
        return exc.cause
    except Exception as exc:  # any decoder failure counts as corrupt, never crashes validation
        return f"{type(exc).__name__}: {exc}"
    return None


def read_package_split(name: str) -> Optional[Dict[str, List[str]]]:
    """Split id lists shipped as package data under ``splits/<name>/``; None when not shipped."""
    folder = resources.files("m2e_plugin.loaders").joinpath("splits", name)
    out = {}
    for split in SPLIT_NAMES:
        f = folder.joinpath(f"{split}.txt")
        if not f.is_file():
            return None
        out[split] = [line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


def _read_id_list(path: str) -> List[str]:
    return [line.strip() for line in _read_text(path).splitlines() if line.strip()]
