"""Descriptor extractors: the protocol, and the built-in ``lite`` and ``music2emo`` extractors.

An extractor turns one mono track into a flat dict of Essentia-style descriptors. The built-ins compute, with
the :class:`~m2e_plugin.predictor.Music2emo` model of the same name:

* ``highlevel.music2emo.valence.value``: track-level valence (1-9), the model's output on the whole track
  (what ``m2e predict`` reports);
* ``highlevel.music2emo.valence.{mean,stdev,median,min,max}``: statistics of valence over sliding windows (1-9);
* ``highlevel.music2emo.arousal.*``: the same for arousal;
* ``highlevel.music2emo.{valence,arousal}_norm.{value,mean}``: the same mapped to 0-1;
* ``highlevel.music2emo.quadrant``: Russell quadrant of the track-level values, ``"Q1"``..``"Q4"``;
* ``highlevel.moodtheme.all.<tag>``: probability of each MTG-Jamendo mood/theme tag (track level);
* ``highlevel.moodtheme.value``: tags above the threshold, most probable first;
  ``highlevel.moodtheme.probability``: the highest tag probability (AcousticBrainz layout);
* ``tonal.key_music2emo.{key,scale,strength}``: the key the model feeds its head (``music2emo`` only);
* ``metadata.version.m2e``, ``metadata.audio_properties.{length,analysis_sample_rate}``;
* ``metadata.models.<name>.*``: provenance: version, sample rate, window, hop, threshold, device and the scalar
  fields of the model card (weights, licence, metrics...);
* ``highlevel.music2emo.frames.{start,end,valence,arousal}``: per-window series (only with ``frames=True``).

Usable without the CLI::

    from m2e_plugin.plugins import get_extractor
    ex = get_extractor("lite")
    pool = ex.compute(samples, sr)          # {"highlevel.music2emo.valence.mean": 5.2, ...}
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np

from m2e_plugin.hookspecs import hookimpl
from m2e_plugin.labels import MOOD_TAGS

# Version of the descriptor layout written by the built-in extractors (not of the models: see metadata.models).
LAYOUT_VERSION = "1.0"

_STATS = ("mean", "stdev", "median", "min", "max")
_NS = "highlevel.music2emo"
_MOOD_NS = "highlevel.moodtheme"


@runtime_checkable
class Extractor(Protocol):
    """What a host needs from an extractor (plugins register classes following it; see :mod:`m2e_plugin.hookspecs`).

    An extractor may also define ``compute_file(path) -> dict``: the batch runner then calls it instead of decoding
    the whole track for ``compute``, so that it can stream long files (the built-in extractors do).
    """

    name: str
    version: str
    sample_rate: int
    outputs: tuple[str, ...]

    def compute(self, audio: np.ndarray, sr: int) -> dict[str, Any]:
        """Descriptors for one track: mono (or multichannel) ``audio`` at ``sr`` Hz."""


def descriptor_names(model: str, tags=MOOD_TAGS, *, key: bool = False, frames: bool = False) -> tuple[str, ...]:
    """Every descriptor name a built-in extractor for ``model`` returns (its ``outputs``)."""
    names = []
    for dim in ("valence", "arousal"):
        names.append(f"{_NS}.{dim}.value")
        names += [f"{_NS}.{dim}.{s}" for s in _STATS]
        names += [f"{_NS}.{dim}_norm.value", f"{_NS}.{dim}_norm.mean"]
    names.append(f"{_NS}.quadrant")
    names += [f"{_MOOD_NS}.all.{t}" for t in tags]
    names += [f"{_MOOD_NS}.value", f"{_MOOD_NS}.probability"]
    if key:
        names += ["tonal.key_music2emo.key", "tonal.key_music2emo.scale", "tonal.key_music2emo.strength"]
    names += ["metadata.version.m2e", "metadata.audio_properties.length",
              "metadata.audio_properties.analysis_sample_rate"]
    names += [f"metadata.models.{model}.{f}" for f in _MODEL_FIELDS]
    if frames:
        names += [f"{_NS}.frames.{f}" for f in ("start", "end", "valence", "arousal")]
    return tuple(names)


# Provenance fields always written under metadata.models.<name>; scalar model-card fields are added on top.
_MODEL_FIELDS = ("name", "version", "sample_rate", "window", "hop", "threshold", "device")


class _BackendAttribute:
    """Class-level attribute read from the backend class, so listing extractors needs no model weights.

    Backends that learn the value only when loading (``lite`` reads its card) give ``fallback``
    (``"module:NAME"``) for the class-level answer; an instance always answers from its loaded backend.
    """

    def __init__(self, attribute: str, fallback: str | None = None):
        self.attribute = attribute
        self.fallback = fallback

    def __get__(self, obj, owner):
        if obj is not None and getattr(obj, "_model", None) is not None:
            return getattr(obj._model.backend, self.attribute)
        from m2e_plugin.backends.base import BUILTIN_BACKENDS

        module_name, class_name = BUILTIN_BACKENDS[owner.model_name].split(":")
        value = getattr(getattr(importlib.import_module(module_name), class_name), self.attribute, None)
        if not value and self.fallback:
            module_name, name = self.fallback.split(":")
            value = getattr(importlib.import_module(module_name), name)
        return value


class _DeclaredOutputs:
    """Class-level ``outputs`` computed on access (the tag list may come from a model card). An instance replaces
    it with its own list, which adds the loaded model card's provenance fields (``metadata.models.<name>.*``)."""

    def __get__(self, obj, owner):
        return owner.declared_outputs()


class Music2emoExtractor:
    """Valence/arousal and mood/theme descriptors from the ``music2emo`` model (MERT + chords + key).

    Parameters
    ----------
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``...
    threshold : float
        Mood threshold for ``highlevel.moodtheme.value`` (tags with probability strictly above it).
    window, hop : float, optional
        Sliding-window length and hop (seconds) for the statistics; the model's defaults when omitted.
    frames : bool
        Also return the per-window series (``highlevel.music2emo.frames.*``).
    batch_windows : int
        Windows handed to the model at once (bounds memory on long tracks).
    **model_options
        Passed to the backend (e.g. ``mert=``, ``checkpoint=``, ``chord_model=`` for ``music2emo``).
    """

    name = "music2emo"
    model_name = "music2emo"
    version = LAYOUT_VERSION
    sample_rate = _BackendAttribute("sample_rate")
    has_key = True
    outputs = _DeclaredOutputs()

    @classmethod
    def declared_outputs(cls) -> tuple[str, ...]:
        """Descriptors every instance returns (without ``frames``), known without loading the model."""
        return descriptor_names(cls.model_name, MOOD_TAGS, key=cls.has_key)

    def __init__(self, *, device: str = "auto", threshold: float = 0.5, window: float | None = None,
                 hop: float | None = None, frames: bool = False, batch_windows: int = 8, **model_options):
        from m2e_plugin.predictor import Music2emo

        self._model = Music2emo(model=self.model_name, device=device, threshold=threshold, **model_options)
        backend = self._model.backend
        self.threshold = float(threshold)
        # "is None", not "or": an explicit 0 is an error to report, not a request for the default.
        self.window = float(backend.window_seconds if window is None else window)
        self.hop = float(backend.hop_seconds if hop is None else hop)
        if not (self.window > 0 and self.hop > 0):  # also rejects NaN
            raise ValueError(f"window and hop must be positive, got window={self.window}, hop={self.hop}")
        self.frames = bool(frames)
        self.batch_windows = max(1, int(batch_windows))
        self.outputs = descriptor_names(self.model_name, backend.mood_tags, key=self.has_key, frames=self.frames)
        self._provenance = self._model_metadata()

    def compute(self, audio: np.ndarray, sr: int) -> dict[str, Any]:
        """Descriptors for one track (see the module docstring for the keys).

        Raises :class:`m2e_plugin.audio.AudioError` for empty or non-finite audio.
        """
        from m2e_plugin.audio import load_audio

        backend = self._model.backend
        rate = int(backend.sample_rate)
        samples, _ = load_audio((np.asarray(audio), int(sr)), target_sr=rate)
        step = max(1, int(backend.block_seconds * rate))
        return self._compute_blocks(samples[i : i + step] for i in range(0, samples.size, step))

    def compute_file(self, path) -> dict[str, Any]:
        """Descriptors for an audio file, decoded block by block: memory stays bounded whatever its length.

        The batch runner prefers this to :meth:`compute` (which needs the whole track in memory). Raises
        :class:`m2e_plugin.audio.AudioError` for a missing, unreadable, empty or non-finite file.
        """
        from m2e_plugin.audio import stream_audio

        backend = self._model.backend
        return self._compute_blocks(stream_audio(path, int(backend.sample_rate), block_seconds=backend.block_seconds))

    def _compute_blocks(self, blocks) -> dict[str, Any]:
        """Track prediction and window statistics in one pass over consecutive blocks at the model's rate."""
        from collections import deque

        from m2e_plugin import __version__
        from m2e_plugin.labels import normalise_va
        from m2e_plugin.predictor import sliding_windows

        backend = self._model.backend
        rate = int(backend.sample_rate)
        starts, ends, valence, arousal = [], [], [], []
        pending: list[tuple[float, np.ndarray]] = []
        decoded: deque = deque()  # blocks the window pass has read and the track prediction has not yet
        total = [0]

        def flush():
            for (start, seg), p in zip(pending, backend.predict_windows([seg for _, seg in pending])):
                starts.append(start)
                ends.append(start + seg.size / rate)
                valence.append(float(p.valence))
                arousal.append(float(p.arousal))
            pending.clear()

        def source():
            for block in blocks:
                total[0] += block.size
                decoded.append(block)
                yield block

        def track_blocks():
            # The window pass drives decoding; each block is handed on to predict_track as soon as it is read,
            # so a single decode serves both and only a block or two is ever held.
            for start, segment in sliding_windows(source(), rate, self.window, self.hop):
                pending.append((start, segment.copy()))  # copy: windows may be views of the stream's buffer
                if len(pending) >= self.batch_windows:
                    flush()
                while decoded:
                    yield decoded.popleft()
            flush()
            while decoded:
                yield decoded.popleft()

        track = self._model.format(backend.predict_track(track_blocks()), self.threshold)

        out: dict[str, Any] = {}
        for dim, series in (("valence", valence), ("arousal", arousal)):
            out[f"{_NS}.{dim}.value"] = track[dim]
            out.update({f"{_NS}.{dim}.{k}": v for k, v in _stats(series).items()})
        for dim in ("valence", "arousal"):
            out[f"{_NS}.{dim}_norm.value"] = normalise_va(track[dim])
            out[f"{_NS}.{dim}_norm.mean"] = normalise_va(out[f"{_NS}.{dim}.mean"])
        out[f"{_NS}.quadrant"] = track["quadrant"]
        probs = track["mood_probabilities"]
        out.update({f"{_MOOD_NS}.all.{t}": p for t, p in probs.items()})
        out[f"{_MOOD_NS}.value"] = list(track["predicted_moods"])
        out[f"{_MOOD_NS}.probability"] = max(probs.values()) if probs else 0.0
        if self.has_key and track.get("key"):
            key = track["key"]
            out["tonal.key_music2emo.key"] = key.get("tonic")
            out["tonal.key_music2emo.scale"] = key.get("mode")
            out["tonal.key_music2emo.strength"] = key.get("confidence")
        out["metadata.version.m2e"] = __version__
        out["metadata.audio_properties.length"] = total[0] / rate
        out["metadata.audio_properties.analysis_sample_rate"] = rate
        out.update(self._provenance)
        if self.frames:
            out[f"{_NS}.frames.start"] = starts
            out[f"{_NS}.frames.end"] = ends
            out[f"{_NS}.frames.valence"] = valence
            out[f"{_NS}.frames.arousal"] = arousal
        return out

    def _model_metadata(self) -> dict[str, Any]:
        backend = self._model.backend
        prefix = f"metadata.models.{self.model_name}"
        meta = {f"{prefix}.name": backend.name, f"{prefix}.version": backend.version,
                f"{prefix}.sample_rate": int(backend.sample_rate), f"{prefix}.window": self.window,
                f"{prefix}.hop": self.hop, f"{prefix}.threshold": self.threshold,
                f"{prefix}.device": str(backend.device)}
        # Scalar model-card fields (weights, licence, metrics...) are provenance too, flattened the Essentia way;
        # lists (the tag list) stay in the card.
        extra = {}

        def walk(node: dict, path: str, depth: int) -> None:
            for field_name, value in node.items():
                key = f"{path}.{field_name}"
                if "." in str(field_name) or key in meta:
                    continue
                if isinstance(value, dict) and depth < 2:
                    walk(value, key, depth + 1)
                elif isinstance(value, (str, int, float, bool)):
                    extra[key] = value

        walk(backend.card or {}, prefix, 0)
        self.outputs = tuple(self.outputs) + tuple(sorted(extra))
        meta.update(extra)
        return meta


class LiteExtractor(Music2emoExtractor):
    """The same descriptors from the embedded ``lite`` model (offline, CPU-friendly). Options as
    :class:`Music2emoExtractor`."""

    name = "lite"
    model_name = "lite"
    has_key = False
    sample_rate = _BackendAttribute("sample_rate", fallback="m2e_plugin.backbones.musicnn:SAMPLE_RATE")
    # Batch runs use one torch thread: lite's many small ops gain nothing from more, and on a busy machine
    # torch's default (all cores) ran 6-7x slower (benchmarks/bench_extract.py).
    torch_threads = 1

    @classmethod
    def declared_outputs(cls) -> tuple[str, ...]:
        # lite predicts only the tags its shipped model card lists (a subset of the 56).
        import json

        from m2e_plugin.backends.lite import default_weights

        card = json.loads(default_weights().with_suffix(".json").read_text(encoding="utf-8"))
        return descriptor_names(cls.model_name, tuple(card["classes"]["mood_tags"]), key=False)


def _stats(series: list[float]) -> dict[str, float]:
    x = np.asarray(series, dtype=float)
    if x.size == 0:
        return {s: float("nan") for s in _STATS}
    return {"mean": float(x.mean()), "stdev": float(x.std()), "median": float(np.median(x)),
            "min": float(x.min()), "max": float(x.max())}


@hookimpl
def m2e_register_extractors(register):
    """The built-in extractors, registered through the same hook as third-party plugins."""
    register(LiteExtractor)
    register(Music2emoExtractor)
