"""Descriptor extractors built on models: every registered model (``lite``, ``music2emo``, a plugin's) is also an
extractor of the same name, made by :func:`model_extractor` from the one generic :class:`ModelExtractor`.

An extractor turns one mono track into a flat dict of Essentia-style descriptors (the protocol is in
:func:`m2e_plugin.hookspecs.m2e_register_extractors`). A model extractor computes, with its model, in one
analysis pass (:func:`m2e_plugin.analysis.analyse`):

* ``highlevel.music2emo.valence.value``: track-level valence (1-9), the model's output on the whole track
  (what ``m2e predict`` reports);
* ``highlevel.music2emo.valence.{mean,stdev,median,min,max}``: statistics of valence over sliding windows (1-9);
* ``highlevel.music2emo.arousal.*``: the same for arousal;
* ``highlevel.music2emo.{valence,arousal}_norm.{value,mean}``: the same mapped to 0-1;
* ``highlevel.music2emo.quadrant``: Russell quadrant of the track-level values, ``"Q1"``..``"Q4"``;
* ``highlevel.moodtheme.all.<tag>``: probability of each MTG-Jamendo mood/theme tag (track level);
* ``highlevel.moodtheme.value``: tags above the threshold, most probable first;
  ``highlevel.moodtheme.probability``: the highest tag probability (AcousticBrainz layout);
* ``tonal.key_<model>.{key,scale,strength}``: the key the model feeds its head (models that predict one:
  ``music2emo``);
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

import copyreg
from typing import Any

import numpy as np

from m2e_plugin.labels import MOOD_TAGS

# Version of the descriptor layout written by the model extractors (not of the models: see metadata.models).
LAYOUT_VERSION = "1.0"

_STATS = ("mean", "stdev", "median", "min", "max")
_NS = "highlevel.music2emo"
_MOOD_NS = "highlevel.moodtheme"


def descriptor_names(model: str, tags=MOOD_TAGS, *, key: bool = False, frames: bool = False) -> tuple[str, ...]:
    """Every descriptor name a model extractor for ``model`` returns (its ``outputs``)."""
    names = []
    for dim in ("valence", "arousal"):
        names.append(f"{_NS}.{dim}.value")
        names += [f"{_NS}.{dim}.{s}" for s in _STATS]
        names += [f"{_NS}.{dim}_norm.value", f"{_NS}.{dim}_norm.mean"]
    names.append(f"{_NS}.quadrant")
    names += [f"{_MOOD_NS}.all.{t}" for t in tags]
    names += [f"{_MOOD_NS}.value", f"{_MOOD_NS}.probability"]
    if key:
        names += [f"tonal.key_{model}.key", f"tonal.key_{model}.scale", f"tonal.key_{model}.strength"]
    names += ["metadata.version.m2e", "metadata.audio_properties.length",
              "metadata.audio_properties.analysis_sample_rate"]
    names += [f"metadata.models.{model}.{f}" for f in _MODEL_FIELDS]
    if frames:
        names += [f"{_NS}.frames.{f}" for f in ("start", "end", "valence", "arousal")]
    return tuple(names)


# Provenance fields always written under metadata.models.<name>; scalar model-card fields are added on top.
_MODEL_FIELDS = ("name", "version", "sample_rate", "window", "hop", "threshold", "device")


def model_extractor(entry) -> type:
    """The extractor class for a registered model (:class:`m2e_plugin.plugins.ModelEntry`).

    Its class attributes come from the model's static card, so listing extractors loads no weights. The class
    pickles as (name, backend class, registered card), so worker processes rebuild it without the registry.
    """
    card = entry.card()
    backend = entry.backend
    return _ModelExtractorType(f"{entry.name.title().replace('-', '').replace('_', '')}Extractor", (ModelExtractor,), {
        "__module__": __name__,
        "__doc__": f"Emotion descriptors from the ``{entry.name}`` model (see :class:`ModelExtractor`).",
        "name": entry.name,
        "model_name": entry.name,
        "backend_class": backend,
        "registered_card": entry.registered_card(),
        "sample_rate": int(card.get("sample_rate") or 0),
        "outputs": descriptor_names(entry.name, tuple(card.get("mood_tags", ())), key=bool(backend.predicts_key)),
        "torch_threads": backend.torch_threads,
    })


class _ModelExtractorType(type):
    """Metaclass of the generated extractor classes: they pickle by what they are built from, not by name."""


def _rebuild_model_extractor(name: str, backend: type, registered_card: dict) -> type:
    from m2e_plugin.plugins import ModelEntry

    return model_extractor(ModelEntry(name, backend, plugin="", card_source=registered_card))


copyreg.pickle(_ModelExtractorType, lambda cls: (_rebuild_model_extractor,
                                                 (cls.model_name, cls.backend_class, cls.registered_card)))


class ModelExtractor:
    """Valence/arousal and mood/theme descriptors from one emotion model (subclassed per model by
    :func:`model_extractor`; get one with ``m2e_plugin.plugins.get_extractor(name)``).

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
    **model_options
        Passed to the backend (e.g. ``mert=``, ``checkpoint=``, ``chord_model=`` for ``music2emo``).
    """

    name = ""
    model_name = ""
    backend_class: type | None = None
    registered_card: dict[str, Any] = {}
    version = LAYOUT_VERSION
    sample_rate = 0
    outputs: tuple[str, ...] = ()
    torch_threads: int | None = None

    @classmethod
    def effective_settings(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The settings an instance built with ``options`` uses, known without loading the model (batch resume
        compares these, so ``threshold=0.5`` or the model's own window spelled out is the same run)."""
        settings = {"threshold": 0.5, "window": None, "hop": None, "frames": False, **options}
        window, hop = settings["window"], settings["hop"]
        settings["window"] = float(cls.backend_class.window_seconds if window is None else window)
        settings["hop"] = float(cls.backend_class.hop_seconds if hop is None else hop)
        settings["threshold"] = float(settings["threshold"])
        settings["frames"] = bool(settings["frames"])
        return settings

    def __init__(self, *, device: str = "auto", threshold: float = 0.5, window: float | None = None,
                 hop: float | None = None, frames: bool = False, **model_options):
        from m2e_plugin.analysis import window_settings
        from m2e_plugin.backends.base import resolve_device
        from m2e_plugin.predictor import Music2emo

        backend = self.backend_class(device=resolve_device(device), **model_options)
        self._model = Music2emo(model=backend, threshold=threshold)
        self.sample_rate = int(backend.sample_rate)
        self.threshold = float(threshold)
        self.window, self.hop = window_settings(backend, window, hop)
        self.frames = bool(frames)
        self.outputs = descriptor_names(self.model_name, backend.mood_tags, key=backend.predicts_key,
                                        frames=self.frames)
        self._provenance = self._model_metadata()

    def compute(self, audio: np.ndarray, sr: int) -> dict[str, Any]:
        """Descriptors for one track (see the module docstring for the keys).

        Raises :class:`m2e_plugin.audio.AudioError` for empty or non-finite audio.
        """
        from m2e_plugin.analysis import decode_blocks

        return self._compute_blocks(decode_blocks(self._model.backend, (np.asarray(audio), int(sr))))

    def compute_file(self, path, on_audio=None) -> dict[str, Any]:
        """Descriptors for an audio file, decoded block by block: memory stays bounded whatever its length.

        The batch runner prefers this to :meth:`compute` (which needs the whole track in memory). Raises
        :class:`m2e_plugin.audio.AudioError` for a missing, unreadable, empty or non-finite file.
        ``on_audio(seconds)``, when given, is called with the audio read so far (progress inside long files).
        """
        from m2e_plugin.analysis import decode_blocks
        from m2e_plugin.progress import reporting_blocks

        backend = self._model.backend
        return self._compute_blocks(reporting_blocks(decode_blocks(backend, path), backend.sample_rate, on_audio))

    def _compute_blocks(self, blocks) -> dict[str, Any]:
        """Track prediction and window statistics in one analysis pass over consecutive blocks."""
        from m2e_plugin import __version__
        from m2e_plugin.analysis import analyse
        from m2e_plugin.labels import normalise_va

        backend = self._model.backend
        result = analyse(backend, blocks, track=True, windows=True, window=self.window, hop=self.hop)
        track = self._model.format(result.track, self.threshold)
        valence = [float(w.prediction.valence) for w in result.windows]
        arousal = [float(w.prediction.arousal) for w in result.windows]

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
        if backend.predicts_key and track.get("key"):
            key = track["key"]
            out[f"tonal.key_{self.model_name}.key"] = key.get("tonic")
            out[f"tonal.key_{self.model_name}.scale"] = key.get("mode")
            out[f"tonal.key_{self.model_name}.strength"] = key.get("confidence")
        out["metadata.version.m2e"] = __version__
        out["metadata.audio_properties.length"] = result.duration
        out["metadata.audio_properties.analysis_sample_rate"] = int(backend.sample_rate)
        out.update(self._provenance)
        if self.frames:
            out[f"{_NS}.frames.start"] = [w.start for w in result.windows]
            out[f"{_NS}.frames.end"] = [w.end for w in result.windows]
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

        # The card the plugin registered (licence, sources...), then what the loaded model says about itself.
        walk({**self.registered_card, **(backend.card or {})}, prefix, 0)
        self.outputs = tuple(self.outputs) + tuple(sorted(extra))
        meta.update(extra)
        return meta


def _stats(series: list[float]) -> dict[str, float]:
    x = np.asarray(series, dtype=float)
    if x.size == 0:
        return {s: float("nan") for s in _STATS}
    return {"mean": float(x.mean()), "stdev": float(x.std()), "median": float(np.median(x)),
            "min": float(x.min()), "max": float(x.max())}
