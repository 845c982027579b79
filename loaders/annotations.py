"""Annotations of the m2e loaders (mirdata keeps these in ``annotations``): :class:`VAData`, the scale conversions,
and the readers of static and dynamic valence/arousal tables.

Common label vocabulary across loaders: ``valence`` / ``arousal`` on the 1-9 scale (9-point Self-Assessment
Manikin, 5 = neutral), ``valence_std`` / ``arousal_std`` on the same scale's units, dynamic annotations as
:class:`VAData`.
"""

from __future__ import annotations

import csv
import functools
import io
import os
from typing import Dict, Optional, Tuple

import numpy as np
from mirdata import annotations

from m2e_plugin.loaders.io import (DatasetFileError, _read_text, check_nine_point, file_exists, find_column,
                                   normalise_id, optional_column, parse_float, read_csv_dicts, read_csv_lines)

#: Units for :class:`VAData` values.
VA_UNITS = {
    "nine_point": "9-point scale, 1 (negative / calm) to 9 (positive / excited), 5 = neutral",
}


def unit_to_nine(x):
    """Map a [0, 1] rating onto the 1-9 scale: ``1 + 8x`` (PMEmo; the mapping Music2Emo used)."""
    return 1.0 + 8.0 * np.asarray(x, dtype=float)


def bipolar_to_nine(x):
    """Map a [-1, 1] rating onto the 1-9 scale: ``5 + 4x`` (DEAM / EmoMusic dynamic annotations)."""
    return 5.0 + 4.0 * np.asarray(x, dtype=float)


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
        DatasetFileError: bad header, non-numeric cell, empty or duplicate id or a value outside 1-9 after rescaling

    """
    std_scale = std_scale or scale
    rows = read_csv_lines(path)
    out: Dict[str, dict] = {}
    if not rows:
        # A header alone (or a binary/garbage file read as one "header" line) used to give a silent 0-track dataset.
        raise DatasetFileError(path, "no rows under the header (truncated, or not a CSV label file)")
    keys = list(rows[0][1].keys())
    id_col = find_column(keys, _ID_ALIASES, path, "song id")
    cols = {k: find_column(keys, _COLUMN_ALIASES[k], path, k) for k in ("valence", "arousal")}
    for k in ("valence_std", "arousal_std"):
        col = optional_column(keys, _COLUMN_ALIASES[k])
        if col:
            cols[k] = col
    for line, row in rows:
        tid = normalise_id(row[id_col])
        if not tid:  # would become a track with id ''
            raise DatasetFileError(path, f"line {line}: the {id_col!r} cell is empty")
        if tid in out:
            raise DatasetFileError(path, f"song id {tid!r} appears twice")
        entry = {"valence_std": None, "arousal_std": None}
        for key, col in cols.items():
            value = parse_float(row[col], path, tid, col)
            if key.endswith("_std"):
                entry[key] = _check_std(value, std_scale, path, tid, col)
            else:
                entry[key] = _check_mean(value, scale, path, tid, col)
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
            out[tid]["valence_std"] = _check_std(parse_float(row[vcol], path, tid, vcol), std_scale, path, tid, vcol)
            out[tid]["arousal_std"] = _check_std(parse_float(row[acol], path, tid, acol), std_scale, path, tid, acol)


def _check_mean(value: float, scale: str, path: str, tid: str, col: str) -> float:
    """A mean on the 1-9 scale, checked on the file's own scale (the error quotes the value the file holds)."""
    low, high = _SCALE_RANGE[scale]
    if not low <= value <= high:
        raise DatasetFileError(path, f"row {tid!r}, column {col!r}: {value} is outside the {low:g}-{high:g} scale "
                                     "of this file")
    return check_nine_point(float(_rescale(np.float64(value), scale)), path, tid, col)


def _check_std(value: float, scale: str, path: str, tid: str, col: str) -> float:
    """A standard deviation in 1-9 units: between 0 and 4, the most ratings on a 1-9 scale can spread."""
    std = value * _STD_FACTOR[scale]
    if not 0.0 <= std <= 4.0:
        raise DatasetFileError(path, f"row {tid!r}, column {col!r}: a standard deviation of {value} is {std:g} in "
                                     "1-9 units, outside 0 to 4 (another dataset's labels, or the wrong scale?)")
    return std


def read_wide_dynamic(path: str, *, scale: Optional[str] = None, std: bool = False
                      ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Read a wide per-time annotation file: ``song_id, sample_15000ms, sample_15500ms, ...``.

    DEAM (``dynamic (per second annotations)/{valence,arousal}.csv``) and EmoMusic
    (``{valence,arousal}_cont_{average,std}.csv``) use this layout. Songs shorter than the longest one leave trailing
    cells empty (or NaN); those are dropped.

    Args:
        path (str): the file
        scale (str or None): when given, the file's scale (as in :func:`load_wide_va`): every value is checked to lie
            on it (``std``: to be a possible standard deviation on it), else a DatasetFileError names line and column
        std (bool): the file holds standard deviations

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
                if scale is not None:
                    _check_dynamic(vals[i], scale, std, path,
                                   f"line {reader.line_num} (song {track_id!r}), column {header[i + 1]!r}")
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
_SCALE_RANGE = {"bipolar": (-1.0, 1.0), "unit": (0.0, 1.0), "nine_point": (1.0, 9.0)}
#: How far a per-time value may pass the end of its scale (float round-off, clipped away); beyond it the value is
#: another scale's (PMEmo's 0-1 file already on 1-9) or bad data, and clipping would hide it.
_ROUND_OFF = 1e-6
#: The largest sample standard deviation (n - 1 denominator) of ratings on 1-9: two ratings, at 1 and 9. PMEmo's
#: per-frame stds reach 0.50006 on [0, 1] (4.0005 in 1-9 units), so the static check's 4 would be too strict here.
_MAX_SAMPLE_STD = 8.0 / np.sqrt(2.0)


def _check_dynamic(value: float, scale: str, std: bool, path: str, where: str) -> float:
    """A per-time value checked on its file's own scale, as the static labels are (``where``: line and column)."""
    if std:
        std_nine = value * _STD_FACTOR[scale]
        if not -_ROUND_OFF <= std_nine <= _MAX_SAMPLE_STD + _ROUND_OFF:
            raise DatasetFileError(path, f"{where}: a standard deviation of {value} is {std_nine:g} in 1-9 units, "
                                         f"outside 0 to {_MAX_SAMPLE_STD:.2f}, the most ratings on that scale can "
                                         "spread (another dataset's labels, or the wrong scale?)")
        return value
    low, high = _SCALE_RANGE[scale]
    if not low - _ROUND_OFF <= value <= high + _ROUND_OFF:
        hint = " (already on the 1-9 scale?)" if scale != "nine_point" and 1.0 <= value <= 9.0 else ""
        raise DatasetFileError(path, f"{where}: {value} is outside the {low:g} to {high:g} scale of this file{hint}")
    return value


def _make_vadata(times, valence, arousal, vstd, astd, scale: str, path: str, track_id: str) -> VAData:
    # The values were checked on the file's scale (_check_dynamic): clipping removes only round-off at its ends.
    v = np.clip(_rescale(valence, scale), 1.0, 9.0)
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
    series = [read_wide_dynamic(p, scale=scale, std=i >= 2) if file_exists(p) else None for i, p in enumerate(paths)]
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

    Raises:
        DatasetFileError: a value off the file's scale by more than float round-off (which is clipped), or a
            standard deviation no ratings on it can have; the error names file, line and column

    """
    paths = (valence_path, arousal_path, valence_std_path, arousal_std_path)
    return _wide_va_cached(paths, scale, tuple(_mtime(p) for p in paths))


@functools.lru_cache(maxsize=8)
def _long_va_cached(mean_path: str, std_path: Optional[str], scale: str, _mtimes) -> Dict[str, VAData]:
    def table(path, kind):
        rows = read_csv_lines(path)
        if not rows:
            return {}
        keys = rows[0][1].keys()
        id_col = find_column(keys, ["musicId", "song_id", "id"], path, "song id")
        t_col = find_column(keys, ["frameTime", "time"], path, "time")
        a_col = find_column(keys, [f"Arousal({kind})", f"arousal_{kind}"], path, "arousal")
        v_col = find_column(keys, [f"Valence({kind})", f"valence_{kind}"], path, "valence")
        acc: Dict[str, list] = {}
        for line, row in rows:
            tid = normalise_id(row[id_col])
            t = parse_float(row[t_col], path, tid, t_col)
            v, a = (_check_dynamic(parse_float(row[col], path, tid, col), scale, kind == "std", path,
                                   f"line {line} (song {tid!r}, {t:g} s), column {col!r}") for col in (v_col, a_col))
            acc.setdefault(tid, []).append((t, v, a))
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

    Raises:
        DatasetFileError: as :func:`load_wide_va`

    """
    return _long_va_cached(mean_path, std_path, scale, (_mtime(mean_path), _mtime(std_path)))
