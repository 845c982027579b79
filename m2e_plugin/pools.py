"""Essentia-style descriptor pools of the built-in extractors: the blocks, the statistics and the audio properties.

Pure functions from predictions to flat dotted names (``highlevel.music2emo.valence.mean``); the extractor calls
them and the batch writer nests them (``{"highlevel": {"music2emo": ...}}``) or keeps them flat for tables.

Layout (one track; ``<dim>`` is ``valence`` or ``arousal``, 1-9; ``<dim>_norm`` the same mapped to 0-1):

* ``highlevel.music2emo.<dim>.value``: the model's prediction for the whole track (what ``m2e predict`` reports);
  ``.{mean,stdev,var,median,min,max,dmean,dvar,dmean2,dvar2}``: statistics over the sliding windows;
  ``.value_rule``: how ``value`` relates to the windows (:data:`VALUE_RULES`).
* ``highlevel.music2emo.quadrant.{value,probability,all.Q1..Q4,source}``: Russell quadrant of the track values,
  its probability and every quadrant's; ``source`` says where ``all`` comes from (:func:`quadrant_block`).
* ``highlevel.moodtheme.{value,probability,all.<tag>}``: the most probable tag, its probability, every tag's;
  ``.above_threshold``: the list of tags above ``.threshold`` (multi-label), most probable first.
* ``metadata.audio_properties.{sample_rate,number_channels,codec,bit_rate,lossless,length,analysis_sample_rate,
  md5_encoded}``: as Essentia's music extractor reports them (:func:`audio_properties`).
* ``metadata.version.m2e``, ``metadata.model.{name,version}``: compact provenance per record; the full model card
  and the run's settings (``provenance.*`` from the extractor) go once into the run manifest.
* Frames (``--frames``) are a separate pool with the same names holding per-window lists (:func:`frames_pool`).

Statistics (:func:`window_stats`): ``var`` and ``stdev`` are population statistics (ddof 0, as Essentia);
``dmean``/``dvar`` are the mean and variance of the absolute difference between consecutive windows, ``dmean2``/
``dvar2`` the same for the second difference (0 when there are too few windows). Windows are weighted by
:func:`window_weights`: 1 each, except the last window that ends at the end of the audio, which weighs the share of
a hop it starts after the previous one (the window shares of the quadrant block too).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any, Iterable, Sequence

import numpy as np

NS = "highlevel.music2emo"
MOOD_NS = "highlevel.moodtheme"
STATS = ("mean", "stdev", "var", "median", "min", "max", "dmean", "dvar", "dmean2", "dvar2")
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
AUDIO_PROPERTIES = ("sample_rate", "number_channels", "codec", "bit_rate", "lossless", "length",
                    "analysis_sample_rate", "md5_encoded")
# How a track's `value` relates to its windows' statistics. The value is the model's output for the whole track
# (its features pooled over the track before the non-linear head), not an average of the windows' outputs, so it
# can fall outside their range; the pool says so instead of silently clipping it.
VALUE_RULES = {
    "whole_track": "the whole-track prediction, inside the windows' min-max",
    "whole_track_outside_windows": "the whole-track prediction, outside the windows' min-max (the head is "
                                   "non-linear: a prediction from pooled features is not a mean of predictions)",
    "whole_track_no_windows": "the whole-track prediction; no window statistics (empty track)",
}


def window_weights(starts: Sequence[float], hop: float) -> np.ndarray:
    """Each window's weight in the statistics: the share of a hop since the previous window started (1 for the
    first). Regular windows weigh 1; the last window, which ends at the end of the audio, weighs what it adds: a
    30.06 s clip's windows start at 0, 5, ..., 20 and 20.06, and counted as a full window that near-copy of the
    20 s window weighted the last 10 s twice in mean and stdev and put a ~0 step into dmean."""
    t = np.asarray(starts, dtype=float)
    if t.size == 0:
        return t
    gaps = np.diff(t) / float(hop) if hop > 0 else np.ones(t.size - 1)
    gaps[gaps > 1.0 - 1e-6] = 1.0  # a regular hop, whatever the float rounding of the starts
    return np.concatenate([[1.0], np.clip(gaps, 0.0, 1.0)])


def _weighted(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """(mean, population variance) of ``x`` with weights ``w``."""
    mean = float(np.sum(w * x) / np.sum(w))
    return mean, float(np.sum(w * (x - mean) ** 2) / np.sum(w))


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    """The value where half the weight is reached; equal weights give :func:`numpy.median` (the two middle values
    averaged for an even count)."""
    order = np.argsort(x, kind="stable")
    xs, cw = x[order], np.cumsum(w[order]) / np.sum(w)
    i = int(np.searchsorted(cw, 0.5 - 1e-12))
    return float((xs[i] + xs[i + 1]) / 2) if abs(cw[i] - 0.5) <= 1e-12 and i + 1 < xs.size else float(xs[i])


def window_stats(series: Sequence[float], weights: Sequence[float] | None = None) -> dict[str, float]:
    """The statistics of :data:`STATS` over a per-window series (NaN for an empty one); ``weights`` (default all
    1) from :func:`window_weights`. A difference counts with the weight of its later window; min and max take
    every window."""
    x = np.asarray(series, dtype=float)
    if x.size == 0:
        return {s: float("nan") for s in STATS}
    w = np.ones(x.size) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != x.shape:
        raise ValueError(f"{w.size} weights for {x.size} windows")
    mean, var = _weighted(x, w)
    d1, d2 = np.abs(np.diff(x)), np.abs(np.diff(x, n=2))
    dmean, dvar = _weighted(d1, w[1:]) if d1.size and w[1:].sum() > 0 else (0.0, 0.0)
    dmean2, dvar2 = _weighted(d2, w[2:]) if d2.size and w[2:].sum() > 0 else (0.0, 0.0)
    return {
        "mean": mean, "stdev": float(np.sqrt(var)), "var": var, "median": _weighted_median(x, w),
        "min": float(x.min()), "max": float(x.max()),
        "dmean": dmean, "dvar": dvar, "dmean2": dmean2, "dvar2": dvar2,
    }


def value_rule(value: float, stats: dict[str, float]) -> str:
    """The :data:`VALUE_RULES` key that describes ``value`` against the windows' ``min``/``max``."""
    lo, hi = stats["min"], stats["max"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "whole_track_no_windows"
    return "whole_track" if lo - 1e-9 <= value <= hi + 1e-9 else "whole_track_outside_windows"


def dimension_block(name: str, value: float, series: Sequence[float],
                    weights: Sequence[float] | None = None) -> dict[str, Any]:
    """``<NS>.<name>.{value, <stats>, value_rule}``."""
    stats = window_stats(series, weights)
    out = {f"{NS}.{name}.value": float(value)}
    out.update({f"{NS}.{name}.{k}": v for k, v in stats.items()})
    out[f"{NS}.{name}.value_rule"] = value_rule(float(value), stats)
    return out


def quadrant_block(value: str, model_probabilities: dict[str, float] | None,
                   window_quadrants: Sequence[str], weights: Sequence[float] | None = None) -> dict[str, Any]:
    """``<NS>.quadrant.{value, probability, all.Q1..Q4, source}``.

    ``all`` is the model's quadrant probabilities when it has them (``source = "model"``: ``lite``); otherwise the
    share of windows in each quadrant (``source = "window_share"``: models that regress valence/arousal only).
    ``probability`` is ``all[value]``; ``value`` is the quadrant of the track values, as ``m2e predict`` reports.
    """
    if model_probabilities:
        shares, source = {q: float(model_probabilities.get(q, 0.0)) for q in QUADRANTS}, "model"
    else:
        w = [1.0] * len(window_quadrants) if weights is None else [float(x) for x in weights]
        total = sum(w)
        shares = {q: (sum(wi for wi, wq in zip(w, window_quadrants) if wq == q) / total if total else float(q == value))
                  for q in QUADRANTS}
        source = "window_share"
    out = {f"{NS}.quadrant.value": value, f"{NS}.quadrant.probability": shares[value]}
    out.update({f"{NS}.quadrant.all.{q}": shares[q] for q in QUADRANTS})
    out[f"{NS}.quadrant.source"] = source
    return out


def mood_block(probabilities: dict[str, float], threshold: float) -> dict[str, Any]:
    """``<MOOD_NS>.{value, probability, all.<tag>, above_threshold, threshold}`` (value: the most probable tag;
    None when no tag reaches :data:`m2e_plugin.labels.TOP_MOOD_FLOOR`, as for silence, where every mood is 0)."""
    from m2e_plugin.labels import TOP_MOOD_FLOOR

    ranked = sorted(probabilities, key=lambda t: (-probabilities[t], t))
    top = ranked[0] if ranked and probabilities[ranked[0]] >= TOP_MOOD_FLOOR else None
    out: dict[str, Any] = {f"{MOOD_NS}.value": top,
                           f"{MOOD_NS}.probability": float(probabilities[ranked[0]]) if ranked else 0.0}
    out.update({f"{MOOD_NS}.all.{t}": float(p) for t, p in probabilities.items()})
    out[f"{MOOD_NS}.above_threshold"] = [t for t in ranked if probabilities[t] > threshold]
    out[f"{MOOD_NS}.threshold"] = float(threshold)
    return out


def block_names(tags: Iterable[str]) -> tuple[str, ...]:
    """The names :func:`dimension_block`, :func:`quadrant_block` and :func:`mood_block` produce (without norms)."""
    names = []
    for dim in ("valence", "arousal", "valence_norm", "arousal_norm"):
        names += [f"{NS}.{dim}.value", *(f"{NS}.{dim}.{s}" for s in STATS), f"{NS}.{dim}.value_rule"]
    names += [f"{NS}.quadrant.value", f"{NS}.quadrant.probability", *(f"{NS}.quadrant.all.{q}" for q in QUADRANTS),
              f"{NS}.quadrant.source", f"{NS}.confidence"]
    names += [f"{MOOD_NS}.value", f"{MOOD_NS}.probability", *(f"{MOOD_NS}.all.{t}" for t in tags),
              f"{MOOD_NS}.above_threshold", f"{MOOD_NS}.threshold"]
    return tuple(names)


# Keys the batch writer routes elsewhere: the frames pool (its own file) and provenance (the run manifest).
FRAMES_PREFIX = "frames."
PROVENANCE_PREFIX = "provenance."


def frame_names() -> tuple[str, ...]:
    """The names of the frames pool (:func:`frames_pool`)."""
    return tuple(frames_pool([], [], [], [], []))


def frames_pool(starts, ends, valence, arousal, quadrants) -> dict[str, list]:
    """The frames pool (Essentia's ``outputFrames``): the same names as the track pool, one list entry a window."""
    return {f"{NS}.frame_start": list(starts), f"{NS}.frame_end": list(ends), f"{NS}.valence": list(valence),
            f"{NS}.arousal": list(arousal), f"{NS}.quadrant": list(quadrants)}


# soundfile subtypes -> the codec names libav (and so Essentia's AudioLoader) reports.
_CODECS = {"MPEG_LAYER_III": "mp3", "MPEG_LAYER_II": "mp2", "MPEG_LAYER_I": "mp1", "FLAC": "flac", "VORBIS": "vorbis",
           "OPUS": "opus", "ALAC_16": "alac", "ALAC_20": "alac", "ALAC_24": "alac", "ALAC_32": "alac",
           "PCM_U8": "pcm_u8", "PCM_S8": "pcm_s8", "FLOAT": "pcm_f32", "DOUBLE": "pcm_f64",
           "PCM_16": "pcm_s16", "PCM_24": "pcm_s24", "PCM_32": "pcm_s32"}
_PCM_BITS = {"pcm_u8": 8, "pcm_s8": 8, "pcm_s16": 16, "pcm_s24": 24, "pcm_s32": 32, "pcm_f32": 32, "pcm_f64": 64}
_LOSSLESS = ("flac", "alac", "wavpack", *_PCM_BITS)


def audio_properties(path: str | os.PathLike) -> dict[str, Any]:
    """``sample_rate``, ``number_channels``, ``codec``, ``bit_rate`` (bits/s; for compressed files the average
    over the file) and ``lossless`` of a file, from its header (soundfile; ffprobe for formats soundfile lacks).
    Values that cannot be read are None."""
    path = os.fspath(path)
    out: dict[str, Any] = {k: None for k in ("sample_rate", "number_channels", "codec", "bit_rate", "lossless")}
    try:
        import soundfile as sf

        info = sf.info(path)
    except Exception:
        return {**out, **_ffprobe_properties(path)}
    base = _CODECS.get(info.subtype, str(info.subtype).lower())
    if info.format == "FLAC":  # libsndfile gives a FLAC file's sample format (PCM_16, PCM_24) as its subtype:
        base = "flac"          # the codec is flac, and its bit rate the file's average, not the PCM rate
    codec = base
    if base.startswith("pcm_") and base not in ("pcm_u8", "pcm_s8"):  # multi-byte PCM names its byte order
        codec += "be" if info.endian == "BIG" or info.format in ("AIFF", "AU") else "le"
    out.update(sample_rate=int(info.samplerate), number_channels=int(info.channels), codec=codec,
               lossless=base in _LOSSLESS)
    if base in _PCM_BITS:
        out["bit_rate"] = int(info.samplerate) * int(info.channels) * _PCM_BITS[base]
    elif info.duration > 0:
        out["bit_rate"] = int(round(os.path.getsize(path) * 8 / info.duration))
    return out


def _ffprobe_properties(path: str) -> dict[str, Any]:
    if shutil.which("ffprobe") is None:
        return {}
    cmd = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=codec_name,sample_rate,channels,bit_rate:format=bit_rate", "-of", "json", path]
    try:
        import json

        probe = json.loads(subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout)
        stream = probe["streams"][0]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError):
        return {}
    bit_rate = stream.get("bit_rate") or probe.get("format", {}).get("bit_rate")
    codec = stream.get("codec_name")
    return {"sample_rate": int(stream["sample_rate"]) if stream.get("sample_rate") else None,
            "number_channels": stream.get("channels"), "codec": codec,
            "bit_rate": int(bit_rate) if bit_rate else None,
            "lossless": codec in _LOSSLESS or (codec or "").startswith("pcm_")}


class EncodedMD5:
    """MD5 of the encoded audio stream (Essentia's ``md5_encoded``: the audio packets without tags or cover art),
    computed by ``ffmpeg -c copy -f md5`` in a background process while the track is analysed.
    :meth:`result` is None when ffmpeg is missing or fails. Use as a context manager (the process is always reaped).
    """

    def __init__(self, path: str | os.PathLike):
        self._proc = None
        if shutil.which("ffmpeg") is None:
            return
        cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", os.fspath(path), "-map", "0:a:0", "-c:a", "copy",
               "-f", "md5", "-"]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL)
        except OSError:
            self._proc = None

    def result(self, timeout: float = 120.0) -> str | None:
        if self._proc is None:
            return None
        try:
            out, _ = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            return None
        text = out.decode("ascii", errors="replace").strip()
        return text[4:] if self._proc.returncode == 0 and text.startswith("MD5=") else None

    def __enter__(self) -> "EncodedMD5":
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()

