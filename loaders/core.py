"""Shared machinery for the m2e dataset loaders, built on :mod:`mirdata.core`.

mirdata hard-codes where indexes live (inside its installed package, or its repository's ``tests/indexes``) and ships
no index for datasets whose audio cannot be downloaded by script. The emotion datasets here are all of that kind, so
every loader builds its index from the files the publisher distributes (label CSV/TSV files plus the audio layout)
the first time it is asked for, and keeps it in memory. :class:`OfflineIndex` points mirdata's ``index_path`` at a
user cache directory (never site-packages); :meth:`EmotionDataset.save_index` writes a mirdata-format JSON there on
request.

Common label vocabulary across loaders: ``valence`` / ``arousal`` on the 1-9 scale (9-point Self-Assessment
Manikin, 5 = neutral), ``valence_std`` / ``arousal_std`` on the same scale's units, dynamic annotations as
:class:`VAData`, ``moods`` as lists of tag strings, ``quadrant`` as ``"Q1".."Q4"``.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import math
import os
import sys
import textwrap
import warnings
from importlib import resources
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from mirdata import annotations, core

INDEX_VERSION = "1.0"

#: Units for :class:`VAData` values.
VA_UNITS = {
    "nine_point": "9-point scale, 1 (negative / calm) to 9 (positive / excited), 5 = neutral",
}

#: Split names returned by ``get_track_splits``.
SPLIT_NAMES = ("train", "validation", "test")


# --------------------------------------------------------------------------------------------------------------------
# Scale conversions (documented per dataset in each module)
# --------------------------------------------------------------------------------------------------------------------


def unit_to_nine(x):
    """Map a [0, 1] rating onto the 1-9 scale: ``1 + 8x`` (PMEmo; the mapping Music2Emo used)."""
    return 1.0 + 8.0 * np.asarray(x, dtype=float)


def bipolar_to_nine(x):
    """Map a [-1, 1] rating onto the 1-9 scale: ``5 + 4x`` (DEAM / EmoMusic dynamic annotations)."""
    return 5.0 + 4.0 * np.asarray(x, dtype=float)


# --------------------------------------------------------------------------------------------------------------------
# Annotation class
# --------------------------------------------------------------------------------------------------------------------


class VAData(annotations.Annotation):
    """Continuous valence/arousal over time (mirdata has no annotation type for it).

    Attributes:
        times (np.ndarray): time stamps, strictly increasing, non-negative
        time_unit (str): time unit, one of mirdata's TIME_UNITS (the loaders use ``"s"``)
        valence (np.ndarray): valence at each time stamp
        arousal (np.ndarray): arousal at each time stamp
        va_unit (str): unit of valence/arousal, one of VA_UNITS
        valence_std (np.ndarray or None): across-annotator standard deviation of valence, same unit
        arousal_std (np.ndarray or None): across-annotator standard deviation of arousal, same unit

    """

    def __init__(self, times, time_unit, valence, arousal, va_unit, valence_std=None, arousal_std=None):
        annotations.validate_array_like(times, np.ndarray, float)
        annotations.validate_array_like(valence, np.ndarray, float)
        annotations.validate_array_like(arousal, np.ndarray, float)
        annotations.validate_array_like(valence_std, np.ndarray, float, none_allowed=True)
        annotations.validate_array_like(arousal_std, np.ndarray, float, none_allowed=True)
        annotations.validate_lengths_equal([times, valence, arousal, valence_std, arousal_std])
        annotations.validate_times(times, time_unit)
        annotations.validate_unit(va_unit, VA_UNITS)
        for name, arr in (("valence", valence), ("arousal", arousal)):
            if va_unit == "nine_point" and arr.size and (np.nanmin(arr) < 1.0 or np.nanmax(arr) > 9.0):
                raise ValueError(f"{name} values must lie within 1-9, got {np.nanmin(arr):.3f}..{np.nanmax(arr):.3f}")

        self.times = times
        self.time_unit = time_unit
        self.valence = valence
        self.arousal = arousal
        self.va_unit = va_unit
        self.valence_std = valence_std
        self.arousal_std = arousal_std

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def to_array(self) -> np.ndarray:
        """Return an ``(n, 3)`` float array of ``[time, valence, arousal]`` rows."""
        return np.stack([self.times, self.valence, self.arousal], axis=1)


# --------------------------------------------------------------------------------------------------------------------
# Errors and file reading
# --------------------------------------------------------------------------------------------------------------------


class DatasetFileError(ValueError):
    """A dataset file that exists but cannot be parsed: names the file and the cause."""

    def __init__(self, path, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class MissingAudioError(FileNotFoundError):
    """A track's audio file is absent. The message names the path and says where to get the audio."""

    def __init__(self, path, track_id: str, dataset_name: str, download_info: str):
        self.path = str(path)
        self.track_id = track_id
        self.dataset_name = dataset_name
        msg = (
            f"{self.path}: audio of track {track_id!r} of dataset {dataset_name!r} is not on disk.\n"
            f"Where to get it:\n{textwrap.dedent(download_info).strip()}"
        )
        super().__init__(msg)


def metadata_property(name: str, doc: str):
    """A lazily cached track attribute read from the track's metadata row (``None`` when the row lacks it)."""

    def getter(self):
        return self._track_metadata.get(name)

    getter.__name__ = name  # mirdata's cached_property caches under the function's name
    getter.__doc__ = doc
    return core.cached_property(getter)


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
        rows.append(dict(zip(header, values)))
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


_ID_ALIASES = ("song_id", "musicId", "id")
_COLUMN_ALIASES = {
    "valence": ("valence_mean", "mean_valence", "Valence(mean)", "valence"),
    "arousal": ("arousal_mean", "mean_arousal", "Arousal(mean)", "arousal"),
    "valence_std": ("valence_std", "std_valence", "Valence(std)"),
    "arousal_std": ("arousal_std", "std_arousal", "Arousal(std)"),
}


def read_static_va(path: str, *, scale: str = "nine_point", std_scale: Optional[str] = None, std_path=None):
    """Read song-level valence/arousal into ``{track_id: {"valence", "arousal", "valence_std", "arousal_std"}}``.

    Column names are matched case-insensitively among the spellings the publishers use (``valence_mean``,
    ``mean_valence``, ``Valence(mean)``, ...). Values are returned on the 1-9 scale and checked to lie within it.

    Args:
        path (str): label file
        scale (str): scale of the means: ``"nine_point"`` (as is) or ``"unit"`` ([0, 1], mapped ``1 + 8x``)
        std_scale (str or None): scale of the standard deviations (default: same as ``scale``); ``"unit"`` multiplies
            them by 8
        std_path (str or None): separate file holding the standard deviations (PMEmo's ``static_annotations_std.csv``)

    Raises:
        DatasetFileError: bad header, non-numeric cell, duplicate id or a value outside 1-9 after rescaling

    """
    std_scale = std_scale or scale
    rows = read_csv_dicts(path)
    out: Dict[str, dict] = {}
    if not rows:
        # A header alone (or a binary/garbage file read as one "header" line) used to give a silent 0-track dataset.
        raise DatasetFileError(path, "no rows under the header (truncated, or not a CSV label file)")
    keys = list(rows[0].keys())
    id_col = find_column(keys, _ID_ALIASES, path, "song id")
    cols = {k: find_column(keys, _COLUMN_ALIASES[k], path, k) for k in ("valence", "arousal")}
    for k in ("valence_std", "arousal_std"):
        col = optional_column(keys, _COLUMN_ALIASES[k])
        if col:
            cols[k] = col
    for row in rows:
        tid = normalise_id(row[id_col])
        if tid in out:
            raise DatasetFileError(path, f"song id {tid!r} appears twice")
        entry = {"valence_std": None, "arousal_std": None}
        for key, col in cols.items():
            value = parse_float(row[col], path, tid, col)
            if key.endswith("_std"):
                entry[key] = value * _STD_FACTOR[std_scale]
            else:
                entry[key] = check_nine_point(float(_rescale(np.float64(value), scale)), path, tid, col)
        out[tid] = entry
    if std_path is not None and file_exists(std_path):
        _merge_std_file(out, std_path, std_scale)
    return out


def _merge_std_file(out: Dict[str, dict], path: str, std_scale: str) -> None:
    rows = read_csv_dicts(path)
    if not rows:
        return
    keys = list(rows[0].keys())
    id_col = find_column(keys, _ID_ALIASES, path, "song id")
    vcol = find_column(keys, _COLUMN_ALIASES["valence_std"], path, "valence std")
    acol = find_column(keys, _COLUMN_ALIASES["arousal_std"], path, "arousal std")
    for row in rows:
        tid = normalise_id(row[id_col])
        if tid in out:
            out[tid]["valence_std"] = parse_float(row[vcol], path, tid, vcol) * _STD_FACTOR[std_scale]
            out[tid]["arousal_std"] = parse_float(row[acol], path, tid, acol) * _STD_FACTOR[std_scale]


def read_wide_dynamic(path: str) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Read a wide per-time annotation file: ``song_id, sample_15000ms, sample_15500ms, ...``.

    DEAM (``dynamic (per second annotations)/{valence,arousal}.csv``) and EmoMusic
    (``{valence,arousal}_cont_{average,std}.csv``) use this layout. Songs shorter than the longest one leave trailing
    cells empty (or NaN); those are dropped.

    Returns:
        dict: ``{track_id: (times_seconds, values)}`` with float arrays in the file's own scale

    """
    raw = _read_text(path)
    reader = csv.reader(io.StringIO(raw, newline=""), skipinitialspace=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DatasetFileError(path, "file is empty (expected a header row)") from None
    times = []
    for name in header[1:]:
        stem = name.lower().replace("sample_", "").replace("ms", "")
        try:
            times.append(float(stem) / 1000.0)
        except ValueError:
            raise DatasetFileError(path, f"column {name!r} is not of the form sample_<milliseconds>ms") from None
    times_arr = np.asarray(times, dtype=float)
    out = {}
    for values in reader:
        if not values or not values[0].strip():
            continue
        track_id = normalise_id(values[0])
        cells = values[1 : len(times) + 1]
        vals = np.full(len(cells), np.nan)
        for i, cell in enumerate(cells):
            cell = cell.strip()
            if cell and cell.lower() != "nan":
                vals[i] = parse_float(cell, path, track_id, header[i + 1])
        keep = ~np.isnan(vals)
        out[track_id] = (times_arr[: len(cells)][keep], vals[keep])
    return out


def _mtime(path: Optional[str]) -> float:
    return os.stat(path).st_mtime if file_exists(path) else -1.0


def _rescale(values: np.ndarray, scale: str) -> np.ndarray:
    if scale == "bipolar":
        return bipolar_to_nine(values)
    if scale == "unit":
        return unit_to_nine(values)
    if scale == "nine_point":
        return values
    raise ValueError(f"unknown scale {scale!r}")


_STD_FACTOR = {"bipolar": 4.0, "unit": 8.0, "nine_point": 1.0}


def _make_vadata(times, valence, arousal, vstd, astd, scale: str, path: str, track_id: str) -> VAData:
    v = np.clip(_rescale(valence, scale), 1.0, 9.0)  # clip only float round-off at the ends of the scale
    a = np.clip(_rescale(arousal, scale), 1.0, 9.0)
    try:
        return VAData(
            times.astype(float),
            "s",
            v.astype(float),
            a.astype(float),
            "nine_point",
            None if vstd is None else (vstd * _STD_FACTOR[scale]).astype(float),
            None if astd is None else (astd * _STD_FACTOR[scale]).astype(float),
        )
    except (ValueError, TypeError) as exc:
        raise DatasetFileError(path, f"track {track_id!r}: bad dynamic annotation ({exc})") from None


def _aligned(times_list, values_list):
    """Keep the time stamps present in every series; return (times, [values...])."""
    common = times_list[0]
    for t in times_list[1:]:
        common = np.intersect1d(common, t)
    out = []
    for t, v in zip(times_list, values_list):
        idx = np.searchsorted(t, common)
        out.append(v[idx])
    return common, out


@functools.lru_cache(maxsize=8)
def _wide_va_cached(paths: Tuple[Optional[str], ...], scale: str, _mtimes: Tuple[float, ...]) -> Dict[str, VAData]:
    vpath, apath, vstd_path, astd_path = paths
    series = [read_wide_dynamic(p) if file_exists(p) else None for p in paths]
    vtab, atab, vstab, astab = series
    out = {}
    for track_id in vtab:
        if track_id not in atab:
            continue
        parts = [vtab[track_id], atab[track_id]]
        has_std = vstab is not None and astab is not None and track_id in vstab and track_id in astab
        if has_std:
            parts += [vstab[track_id], astab[track_id]]
        times, vals = _aligned([p[0] for p in parts], [p[1] for p in parts])
        if times.size == 0:
            continue
        vstd, astd = (vals[2], vals[3]) if has_std else (None, None)
        out[track_id] = _make_vadata(times, vals[0], vals[1], vstd, astd, scale, vpath, track_id)
    return out


def load_wide_va(valence_path, arousal_path, valence_std_path=None, arousal_std_path=None, *, scale="bipolar"):
    """Load per-time valence/arousal from wide files (one row per song) as ``{track_id: VAData}`` on the 1-9 scale.

    Args:
        valence_path (str): wide valence file (see :func:`read_wide_dynamic`)
        arousal_path (str): wide arousal file
        valence_std_path (str or None): optional wide file of valence standard deviations
        arousal_std_path (str or None): optional wide file of arousal standard deviations
        scale (str): scale of the files: ``"bipolar"`` ([-1, 1], mapped ``5 + 4x``), ``"unit"`` ([0, 1],
            ``1 + 8x``) or ``"nine_point"`` (already 1-9); standard deviations are multiplied by 4, 8 or 1

    Returns:
        dict: ``{track_id: VAData}`` for songs present in both files, on the time stamps both files share.
        Cached per file modification time, so tracks of one dataset share one parse.

    """
    paths = (valence_path, arousal_path, valence_std_path, arousal_std_path)
    return _wide_va_cached(paths, scale, tuple(_mtime(p) for p in paths))


@functools.lru_cache(maxsize=8)
def _long_va_cached(mean_path: str, std_path: Optional[str], scale: str, _mtimes) -> Dict[str, VAData]:
    def table(path, kind):
        rows = read_csv_dicts(path)
        if not rows:
            return {}
        keys = rows[0].keys()
        id_col = find_column(keys, ["musicId", "song_id", "id"], path, "song id")
        t_col = find_column(keys, ["frameTime", "time"], path, "time")
        a_col = find_column(keys, [f"Arousal({kind})", f"arousal_{kind}"], path, "arousal")
        v_col = find_column(keys, [f"Valence({kind})", f"valence_{kind}"], path, "valence")
        acc: Dict[str, list] = {}
        for row in rows:
            tid = normalise_id(row[id_col])
            acc.setdefault(tid, []).append(
                (
                    parse_float(row[t_col], path, tid, t_col),
                    parse_float(row[v_col], path, tid, v_col),
                    parse_float(row[a_col], path, tid, a_col),
                )
            )
        out = {}
        for tid, vals in acc.items():
            arr = np.asarray(sorted(vals), dtype=float)
            out[tid] = (arr[:, 0], arr[:, 1], arr[:, 2])
        return out

    means = table(mean_path, "mean")
    stds = table(std_path, "std") if file_exists(std_path) else {}
    out = {}
    for tid, (t, v, a) in means.items():
        if tid in stds:
            ts, vs, as_ = stds[tid]
            times, (v, a, vs, as_) = _aligned([t, t, ts, ts], [v, a, vs, as_])
        else:
            times, vs, as_ = t, None, None
        out[tid] = _make_vadata(times, v, a, vs, as_, scale, mean_path, tid)
    return out


def load_long_va(mean_path, std_path=None, *, scale="unit"):
    """Load per-time valence/arousal from long files (``musicId,frameTime,Arousal(mean),Valence(mean)``, PMEmo).

    Args:
        mean_path (str): file of per-frame means
        std_path (str or None): optional file of per-frame standard deviations (``Arousal(std)``, ``Valence(std)``)
        scale (str): scale of the file, as in :func:`load_wide_va` (PMEmo: ``"unit"``)

    Returns:
        dict: ``{track_id: VAData}`` on the 1-9 scale, cached per file modification time

    """
    return _long_va_cached(mean_path, std_path, scale, (_mtime(mean_path), _mtime(std_path)))


# --------------------------------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# Index, Track, Dataset
# --------------------------------------------------------------------------------------------------------------------


def user_cache_dir() -> str:
    """Directory for saved indexes: ``indexes`` under the one m2e cache root (:func:`m2e_plugin.cache.cache_root`)."""
    from m2e_plugin.cache import cache_dir

    return str(cache_dir("indexes"))


class OfflineIndex(core.Index):
    """A mirdata Index that is built from the dataset on disk instead of downloaded.

    ``remote`` is None (nothing to download) and ``indexes_dir`` is the user cache directory, so nothing is ever
    looked up in or written to the installed package. ``get_path(data_home)`` gives one file per data_home, since
    an index built from disk describes that copy of the dataset.
    """

    def __init__(self, filename: str):
        super().__init__(filename)
        self.remote = None

    @property
    def indexes_dir(self) -> str:
        """The user cache directory, read at each use so ``M2E_CACHE`` can change at run time."""
        return user_cache_dir()

    @indexes_dir.setter
    def indexes_dir(self, value) -> None:
        # mirdata's Index.__init__ assigns a path inside its package; an offline index never lives there.
        pass

    def get_path(self, data_home: Optional[str] = None) -> str:
        """Path of the saved index for ``data_home`` (inside the user cache directory)."""
        if data_home is None:
            return os.path.join(self.indexes_dir, self.filename)
        digest = hashlib.sha1(os.path.realpath(data_home).encode("utf-8")).hexdigest()[:12]
        stem, ext = os.path.splitext(self.filename)
        return os.path.join(self.indexes_dir, f"{stem}_{digest}{ext}")


def make_indexes(name: str) -> dict:
    """mirdata-style INDEXES dict for a loader whose index is built offline."""
    return {"default": INDEX_VERSION, "test": INDEX_VERSION, INDEX_VERSION: OfflineIndex(f"{name}_index_{INDEX_VERSION}.json")}


class EmotionTrack(core.Track):
    """Base Track: ``audio_path`` attribute, lazily loaded mono ``audio``, clear error when audio is missing.

    Subclasses set ``_download_info`` (the module's DOWNLOAD_INFO).
    """

    _download_info = ""

    def __init__(self, track_id, data_home, dataset_name, index, metadata):
        super().__init__(track_id, data_home, dataset_name, index, metadata)
        self.audio_path = self.get_path("audio")

    @property
    def audio(self) -> Tuple[np.ndarray, int]:
        """tuple: (mono float32 np.ndarray, native sample rate int), decoded on each access (not cached: it is large).

        Returns:
            * np.ndarray - mono audio signal, float32
            * int - native sample rate

        """
        if not file_exists(self.audio_path):
            raise MissingAudioError(self.audio_path, self.track_id, self._dataset_name, self._download_info)
        return load_audio(self.audio_path)


class VATrack(EmotionTrack):
    """Base Track for datasets with numeric valence/arousal (DEAM, PMEmo, EmoMusic).

    Static labels come from the dataset metadata (already on the 1-9 scale); the dynamic annotation is read lazily
    from the files named in the track's index entry (``dynamic_valence``/``dynamic_arousal`` and optional ``*_std``
    for wide files, ``dynamic``/``dynamic_std`` for long files), scaled per ``_dynamic_scale``.
    """

    _dynamic_scale = "bipolar"

    @core.cached_property
    def valence(self) -> float:
        """float: mean valence, 1-9 scale"""
        return self._track_metadata["valence"]

    @core.cached_property
    def arousal(self) -> float:
        """float: mean arousal, 1-9 scale"""
        return self._track_metadata["arousal"]

    valence_std = metadata_property("valence_std", "float or None: across-annotator standard deviation of valence, 1-9 scale units")

    arousal_std = metadata_property("arousal_std", "float or None: across-annotator standard deviation of arousal, 1-9 scale units")

    @core.cached_property
    def quadrant(self) -> str:
        """str: Russell quadrant of the static (valence, arousal), split at 5 (Q1 +V+A .. Q4 +V-A)"""
        from m2e_plugin.labels import quadrant

        return quadrant(self.valence, self.arousal)

    def _path(self, key: str) -> Optional[str]:
        return self.get_path(key) if key in self._track_paths else None

    @core.cached_property
    def dynamic(self) -> Optional[VAData]:
        """VAData or None: valence/arousal over time (1-9 scale, seconds); None when the files are absent or the
        track is not in them"""
        if "dynamic" in self._track_paths:
            path = self._path("dynamic")
            if not file_exists(path):
                return None
            return load_long_va(path, self._path("dynamic_std"), scale=self._dynamic_scale).get(self.track_id)
        vpath, apath = self._path("dynamic_valence"), self._path("dynamic_arousal")
        if not (file_exists(vpath) and file_exists(apath)):
            return None
        table = load_wide_va(
            vpath, apath, self._path("dynamic_valence_std"), self._path("dynamic_arousal_std"), scale=self._dynamic_scale
        )
        return table.get(self.track_id)


class EmotionDataset(core.Dataset):
    """Base Dataset for loaders whose index is built from the files on disk.

    Subclasses implement ``_metadata`` (``{track_id: {...}}`` parsed from the label files; raise FileNotFoundError
    naming the expected files when absent) and ``_audio_relpath(track_id, meta)``; they may list their label files in
    ``_metadata_files()`` so the index records them.
    """

    def __init__(self, data_home=None, version="default", **kwargs):
        # Explicit base call: a subclass may also inherit a mirdata loader whose __init__ hard-codes its INDEXES.
        core.Dataset.__init__(self, data_home, version, **kwargs)
        self.data_home = os.fspath(self.data_home)
        # mirdata computed index_path with no data_home; one saved index per copy of the dataset.
        self.index_path = self._index_data.get_path(self.data_home)

    # -- index -------------------------------------------------------------------------------------------------------

    def _audio_relpath(self, track_id: str, meta: dict) -> Optional[str]:
        """Audio path of a track relative to data_home; every dataset module overrides it (abstract hook)."""
        raise NotImplementedError(f"{type(self).__name__} must define where its audio files live")

    def _shared_track_files(self) -> Dict[str, str]:
        """``{index key: path relative to data_home}`` of annotation files every track reads (dynamic VA files that
        exist on disk); they go into each track's index entry, as mirdata does for per-track annotations."""
        return {}

    def _metadata_files(self) -> Dict[str, str]:
        """``{key: path relative to data_home}`` of the label files in use (recorded under the index's metadata)."""
        return {}

    @core.cached_property
    def _index(self):
        meta = self._metadata
        shared = {k: [v, None] for k, v in self._shared_track_files().items()}
        tracks = {}
        for track_id, m in meta.items():
            tracks[track_id] = {"audio": [self._audio_relpath(track_id, m), None], **shared}
        return {
            "version": INDEX_VERSION,
            "tracks": tracks,
            "metadata": {k: [v, None] for k, v in self._metadata_files().items()},
        }

    def save_index(self, path: Optional[str] = None) -> str:
        """Write the index (mirdata JSON format, checksums null) and return its path.

        Args:
            path (str or None): where to write; default ``self.index_path`` in the user cache directory

        """
        path = path or self.index_path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self._index, fh)
        return path

    def _missing_labels(self, expected: Sequence[str]) -> FileNotFoundError:
        listing = "\n".join(f"  {os.path.join(self.data_home, p)}" for p in expected)
        return FileNotFoundError(
            f"{self.name}: no label files found under {self.data_home}. Expected one of:\n{listing}\n"
            f"Where to get the dataset:\n{textwrap.dedent(self._download_info or '').strip()}"
        )

    def _first_existing(self, candidates: Sequence[str]) -> Optional[str]:
        for rel in candidates:
            if file_exists(os.path.join(self.data_home, rel)):
                return rel
        return None

    # -- splits ------------------------------------------------------------------------------------------------------

    def _split_from_lists(self, lists: Dict[str, List[str]], source: str) -> Dict[str, List[str]]:
        known = set(self.track_ids)
        out = {}
        dropped = 0
        for name in SPLIT_NAMES:
            ids = [normalise_id(i) for i in lists.get(name, [])]
            out[name] = [i for i in ids if i in known]
            dropped += len(ids) - len(out[name])
        if dropped:
            warnings.warn(
                f"{self.name}: {dropped} track ids of the {source} split are not in this copy of the dataset "
                f"({self.data_home}); they were left out",
                stacklevel=3,
            )
        return out

    def _music2emo_split(self) -> Dict[str, List[str]]:
        """Music2Emo's split id lists: package data ``splits/<name>/``, else ``{meta,music2emo-meta}/split/``."""
        lists = read_package_split(self.name)
        source = "package data"
        if lists is None:
            for rel in ("music2emo-meta/split", "meta/split"):
                folder = os.path.join(self.data_home, rel)
                if all(file_exists(os.path.join(folder, f"{n}.txt")) for n in SPLIT_NAMES):
                    lists = {n: _read_id_list(os.path.join(folder, f"{n}.txt")) for n in SPLIT_NAMES}
                    source = folder
                    break
        if lists is None:
            raise NotImplementedError(
                f"{self.name}: Music2Emo's split id lists are not shipped with m2e for this dataset; put "
                f"train.txt/validation.txt/test.txt (one id a line) in {os.path.join(self.data_home, 'meta', 'split')} "
                "or use get_random_track_splits"
            )
        return self._split_from_lists(lists, f"music2emo ({source})")

    def get_random_track_splits(self, splits, seed=42, split_names=None, *, stratify=None):
        """Split the tracks at random into partitions (mirdata's method, optionally stratified).

        Args:
            splits (list of float): fractions summing to 1
            seed (int): seed of the random generator, for reproducibility
            split_names (list or None): keys of the output dictionary (default 0, 1, ...)
            stratify (str or None): a track attribute (e.g. ``"quadrant"``); each of its values is split in the
                given fractions separately, so every partition keeps the dataset's proportions

        Returns:
            dict: partition name -> array of track ids

        """
        if stratify is None:
            return core.Dataset.get_random_track_splits(self, splits, seed=seed, split_names=split_names)
        groups: Dict[object, List[str]] = {}
        for track_id in self.track_ids:
            groups.setdefault(getattr(self.track(track_id), stratify), []).append(track_id)
        names = split_names if split_names else list(range(len(splits)))
        merged: Dict[object, list] = {name: [] for name in names}
        for i, key in enumerate(sorted(groups, key=str)):
            # a different seed per group, derived from the user's, so groups are not shuffled in lockstep
            parts = self._get_partitions(groups[key], splits, seed + i, split_names)
            for name in names:
                merged[name].extend(parts[name].tolist())
        return {name: np.asarray(ids) for name, ids in merged.items()}

    # -- validation --------------------------------------------------------------------------------------------------

    def validate(self, verbose: bool = True, decode: bool = False, damaged: Optional[dict] = None):
        """Check every track's audio: present, and readable (header, or a full decode with ``decode=True``).

        Never raises for bad audio; everything is reported.

        Args:
            verbose (bool): print progress and a summary to stderr
            decode (bool): decode each file fully instead of only reading its header (slower, finds truncation)
            damaged (dict, optional): filled with ``{track_id: [warning, ...]}`` for usable tracks whose decode
                lost audio (``decode=True``; see :func:`m2e_plugin.audio.stream_audio`)

        Returns:
            * dict - ``{track_id: [missing path]}``
            * dict - ``{track_id: ["path: cause"]}`` for corrupt or unreadable audio

        """
        from tqdm import tqdm

        missing, invalid = {}, {}
        for track_id in tqdm(self.track_ids, disable=not verbose, desc=f"validate {self.name}", file=sys.stderr):
            path = self.track(track_id).audio_path
            if not file_exists(path):
                missing[track_id] = [path]
                continue
            lost: list = []
            cause = check_audio_file(path, decode=decode, warnings=lost)
            if cause is not None:
                invalid[track_id] = [f"{path}: {cause}"]
            elif lost:
                if damaged is not None:
                    damaged[track_id] = lost
                if verbose:
                    print(f"{path}: usable, but " + "; ".join(w["message"] for w in lost), file=sys.stderr)
        if verbose:
            n = len(self.track_ids)
            print(
                f"{self.name}: {n} tracks, {n - len(missing) - len(invalid)} with usable audio, "
                f"{len(missing)} missing, {len(invalid)} corrupt",
                file=sys.stderr,
            )
        return missing, invalid


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


__all__ = [
    "VAData",
    "VA_UNITS",
    "OfflineIndex",
    "EmotionTrack",
    "EmotionDataset",
    "MissingAudioError",
    "DatasetFileError",
    "unit_to_nine",
    "bipolar_to_nine",
    "load_audio",
    "read_csv_dicts",
    "read_wide_dynamic",
]
