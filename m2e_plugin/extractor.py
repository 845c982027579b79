"""Descriptor extractors built on models: every registered model (``lite``, ``music2emo``, a plugin's) is also an
extractor of the same name, made by :func:`model_extractor` from the one generic :class:`ModelExtractor`.

An extractor turns one mono track into a flat dict of Essentia-style descriptors (the protocol is in
:func:`m2e_plugin.hookspecs.m2e_register_extractors`). A model extractor computes, with its model, in one
analysis pass (:func:`m2e_plugin.analysis.analyse`), the pool described in :mod:`m2e_plugin.pools`:
``highlevel.music2emo.{valence,arousal,valence_norm,arousal_norm}.{value, mean, stdev, var, median, min, max,
dmean, dvar, dmean2, dvar2, value_rule}``, ``highlevel.music2emo.quadrant.{value, probability, all.Q1..Q4,
source}``, ``highlevel.moodtheme.{value, probability, all.<tag>, above_threshold, threshold}``,
``tonal.key_<model>.{key,scale,strength}`` (models that predict a key: ``music2emo``),
``metadata.audio_properties.*``, ``metadata.version.m2e`` and ``metadata.model.{name,version}``.

Two families of keys are for the batch writer to route (plain ``compute`` callers get them in the same dict):
``frames.<name>`` (only with ``frames=True``) is the frames pool, written to its own file; ``provenance.*`` (the
model card and the effective settings) goes once into the run manifest instead of into every record.
``metadata.warnings`` lists what decoding lost or the model fell back on (``{code, start, seconds_lost, message}``,
empty when nothing went wrong; see :func:`m2e_plugin.audio.stream_audio`).

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

# Version of the descriptor layout written by the model extractors (not of the models: see metadata.model).
# 2.0: Essentia-style {value, probability, all} blocks, full statistics, frames and provenance in their own pools.
# 2.1: the statistics weight the last, end-aligned window by the share of a hop it adds (pools.window_weights): a
#      folder of 2.0 pools is not resumed into (two definitions of the statistics in one table).
LAYOUT_VERSION = "2.1"


def descriptor_names(model: str, tags=MOOD_TAGS, *, key: bool = False, frames: bool = False) -> tuple[str, ...]:
    """Every descriptor name a model extractor for ``model`` returns (its ``outputs``)."""
    from m2e_plugin import pools

    names = list(pools.block_names(tags))
    if key:
        names += [f"tonal.key_{model}.key", f"tonal.key_{model}.scale", f"tonal.key_{model}.strength"]
    names += ["metadata.version.m2e", "metadata.model.name", "metadata.model.version"]
    names += [f"metadata.audio_properties.{p}" for p in pools.AUDIO_PROPERTIES] + ["metadata.warnings"]
    names += [f"{pools.PROVENANCE_PREFIX}{f}" for f in ("model_card", "settings")]
    if frames:
        names += [pools.FRAMES_PREFIX + name for name in pools.frame_names()]
    return tuple(names)


def model_extractor(entry) -> type:
    """The extractor class for a registered model (:class:`m2e_plugin.registry.ModelEntry`).

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
        "model_version": card.get("version"),
        "sample_rate": int(card.get("sample_rate") or 0),
        "outputs": descriptor_names(entry.name, tuple(card.get("mood_tags", ())), key=bool(backend.predicts_key)),
        "torch_threads": backend.torch_threads,
    })


class _ModelExtractorType(type):
    """Metaclass of the generated extractor classes: they pickle by what they are built from, not by name."""


def _rebuild_model_extractor(name: str, backend: type, registered_card: dict) -> type:
    from m2e_plugin.registry import ModelEntry

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
        Mood threshold for ``highlevel.moodtheme.above_threshold`` (tags with probability strictly above it).
    window, hop : float, optional
        Sliding-window length and hop (seconds) for the statistics; the model's defaults when omitted.
    frames : bool
        Also return the frames pool, the per-window series (``frames.highlevel.music2emo.*``).
    **model_options
        Passed to the backend (e.g. ``mert=``, ``checkpoint=``, ``chord_model=`` for ``music2emo``).
    """

    name = ""
    model_name = ""
    backend_class: type | None = None
    registered_card: dict[str, Any] = {}
    model_version: str | None = None  # the model's static version (its card's): part of the effective settings
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
        if cls.model_version:
            # Another version of the model (a plugin upgraded, retrained weights) is another run: resuming into a
            # folder made with the old one mixed the two versions' values in one table.
            settings["model_version"] = str(cls.model_version)
        return settings

    def __init__(self, *, device: str = "auto", threshold: float = 0.5, window: float | None = None,
                 hop: float | None = None, frames: bool = False, **model_options):
        from m2e_plugin.analysis import window_settings
        from m2e_plugin.backends.base import resolve_device
        from m2e_plugin.predictor import Music2emo, check_threshold

        self.threshold = check_threshold(threshold)  # before the model loads
        backend = self.backend_class(device=resolve_device(device), **model_options)
        self._model = Music2emo(model=backend, threshold=self.threshold)
        self.sample_rate = int(backend.sample_rate)
        self.window, self.hop = window_settings(backend, window, hop)
        self.frames = bool(frames)
        self.outputs = descriptor_names(self.model_name, backend.mood_tags, key=backend.predicts_key,
                                        frames=self.frames)
        self._provenance = self._provenance_pool()

    def compute(self, audio: np.ndarray, sr: int) -> dict[str, Any]:
        """Descriptors for one track (see the module docstring for the keys).

        Raises :class:`m2e_plugin.audio.AudioError` for empty or non-finite audio.
        """
        import os

        from m2e_plugin.analysis import decode_blocks

        if isinstance(audio, (str, bytes, os.PathLike)) or hasattr(audio, "read"):
            raise TypeError("compute() takes samples (an array and its sample rate); for a file, path or bytes use "
                            "compute_file()")
        audio = np.asarray(audio)
        # Decoding checks the shape and the rate first (as predict() does): int(sr) here silently truncated a
        # fractional rate (16000.5), and a 0-d array failed in min(shape) with an unrelated message.
        blocks = decode_blocks(self._model.backend, (audio, sr))
        channels = 1 if audio.ndim == 1 else int(min(audio.shape))
        properties = {"sample_rate": int(sr), "number_channels": channels, "codec": None, "bit_rate": None,
                      "lossless": None, "md5_encoded": None}
        return self._compute_blocks(blocks, properties)

    def compute_file(self, path, on_audio=None) -> dict[str, Any]:
        """Descriptors for an audio file, decoded block by block: memory stays bounded whatever its length.

        ``path`` is anything :func:`m2e_plugin.audio.audio_source` takes (a path, ``"-"``, a pipe, bytes, a binary
        file object): one-shot sources are copied once, since the header, the hash and the decode each read it.
        The batch runner prefers this to :meth:`compute` (which needs the whole track in memory). Raises
        :class:`m2e_plugin.audio.AudioError` for a missing, unreadable, empty or non-finite file.
        ``on_audio(seconds)``, when given, is called with the audio read so far (progress inside long files).
        """
        from m2e_plugin import pools
        from m2e_plugin.analysis import decode_blocks
        from m2e_plugin.audio import audio_source
        from m2e_plugin.progress import reporting_blocks

        backend = self._model.backend
        warnings: list[dict[str, Any]] = []
        with audio_source(path) as source:
            blocks = reporting_blocks(decode_blocks(backend, source, warnings=warnings), backend.sample_rate,
                                      on_audio)
            with pools.EncodedMD5(source) as md5:  # ffmpeg hashes the encoded stream while the model runs
                out = self._compute_blocks(blocks, pools.audio_properties(source), warnings)
                out["metadata.audio_properties.md5_encoded"] = md5.result()
        return out

    def _compute_blocks(self, blocks, properties: dict[str, Any], warnings: list | None = None) -> dict[str, Any]:
        """Track prediction and window statistics in one analysis pass over consecutive blocks."""
        from m2e_plugin import __version__, pools
        from m2e_plugin.analysis import analyse
        from m2e_plugin.labels import normalise_va, quadrant

        backend = self._model.backend
        result = analyse(backend, blocks, track=True, windows=True, window=self.window, hop=self.hop)
        track = self._model.format(result.track, self.threshold)
        valence = [float(w.prediction.valence) for w in result.windows]
        arousal = [float(w.prediction.arousal) for w in result.windows]
        window_quadrants = [quadrant(v, a) for v, a in zip(valence, arousal)]
        weights = pools.window_weights([w.start for w in result.windows], self.hop)

        out: dict[str, Any] = {}
        for dim, series in (("valence", valence), ("arousal", arousal)):
            out.update(pools.dimension_block(dim, track[dim], series, weights))
            out.update(pools.dimension_block(f"{dim}_norm", normalise_va(track[dim]),
                                             [normalise_va(v) for v in series], weights))
        out.update(pools.quadrant_block(track["quadrant"], track.get("quadrant_probabilities"), window_quadrants,
                                        weights))
        out[f"{pools.NS}.confidence"] = track.get("confidence")  # lite: lower for short or quiet input
        out.update(pools.mood_block(track["mood_probabilities"], self.threshold))
        if backend.predicts_key and track.get("key"):
            key = track["key"]
            out[f"tonal.key_{self.model_name}.key"] = key.get("tonic")
            out[f"tonal.key_{self.model_name}.scale"] = key.get("mode")
            out[f"tonal.key_{self.model_name}.strength"] = key.get("confidence")
        out["metadata.version.m2e"] = __version__
        out["metadata.model.name"] = backend.name
        out["metadata.model.version"] = backend.version
        out.update({f"metadata.audio_properties.{k}": v for k, v in properties.items()})
        out["metadata.audio_properties.length"] = result.duration
        out["metadata.audio_properties.analysis_sample_rate"] = int(backend.sample_rate)
        out["metadata.warnings"] = list(warnings or ()) + list(result.track.extras.get("warnings", ()))
        out.update(self._provenance)
        if self.frames:
            frames = pools.frames_pool([w.start for w in result.windows], [w.end for w in result.windows],
                                       valence, arousal, window_quadrants)
            out.update({pools.FRAMES_PREFIX + k: v for k, v in frames.items()})
        return out

    def _provenance_pool(self) -> dict[str, Any]:
        """The model card (what the plugin registered, then what the loaded model says) and the settings in use:
        the batch writer moves them into the run manifest (once per run, not per record)."""
        from m2e_plugin import pools

        backend = self._model.backend
        card = {**self.registered_card, **(backend.card or {})}
        settings = {"threshold": self.threshold, "window": self.window, "hop": self.hop, "frames": self.frames,
                    "device": str(backend.device)}
        return {f"{pools.PROVENANCE_PREFIX}model_card": card, f"{pools.PROVENANCE_PREFIX}settings": settings}
