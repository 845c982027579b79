"""The seam between the predictor (and the extractor, the realtime sidecar) and a concrete emotion model.

A backend turns mono float32 audio at its own ``sample_rate`` into a :class:`Prediction`. Two entry points:

* ``predict_track(blocks)``: a whole track, given as consecutive blocks of ``block_seconds`` (the last may be
  shorter), so that hours of audio never need to sit in memory. This is the model's faithful track-level output.
* ``predict_window(audio)``: one analysis window (timeline, realtime). Any length, even 0.1 s: backends pad
  what is shorter than their receptive field.

Backends are registered by name through the ``m2e_register_models`` hook (the built-ins from
:mod:`m2e_plugin.backends.builtin`, third parties from their entry points) and built by :func:`get_backend`.
How a track is cut into windows and batched is decided here, on the backend (``window_seconds``, ``hop_seconds``,
``window_batch``), and applied by the one analysis pass, :func:`m2e_plugin.analysis.analyse`.
"""

from __future__ import annotations

import re

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np


@dataclass
class Prediction:
    """One model output. ``mood_probabilities`` is aligned with the backend's ``mood_tags``."""

    valence: float  # 1-9
    arousal: float  # 1-9
    mood_probabilities: np.ndarray  # (len(mood_tags),) in [0, 1]
    key: dict[str, Any] | None = None  # {"tonic": "C#", "mode": "minor", "confidence": 0.8} when the model uses one
    extras: dict[str, Any] = field(default_factory=dict)


class EmotionBackend(ABC):
    """A model that predicts valence/arousal (1-9) and mood probabilities from audio."""

    name: str = ""
    version: str = ""
    sample_rate: int = 0
    block_seconds: float = 30.0  # unit of predict_track's streamed blocks
    window_seconds: float = 10.0  # default timeline / realtime window
    hop_seconds: float = 5.0  # default timeline hop
    window_batch: int = 1  # windows per predict_windows call (a GPU backend raises it)
    predicts_key: bool = False  # predictions carry a key (tonic/mode): extractors write tonal.key_<model>.*
    torch_threads: int | None = None  # torch threads that suit the model on CPU (batch workers); None: torch's
    mood_tags: tuple[str, ...] = ()
    device: str = "cpu"

    @property
    def card(self) -> dict[str, Any]:
        """The model card (JSON-able): name, version, sample rate, outputs, classes, training data, metrics."""
        return {"name": self.name, "version": self.version, "sample_rate": self.sample_rate,
                "mood_tags": list(self.mood_tags)}

    @abstractmethod
    def predict_track(self, blocks: Iterable[np.ndarray]) -> Prediction:
        """Whole-track prediction from consecutive blocks at ``sample_rate``."""

    def predict_window(self, audio: np.ndarray) -> Prediction:
        """Prediction for one window of audio at ``sample_rate``."""
        return self.predict_track([audio])

    def predict_windows(self, windows: list[np.ndarray]) -> list[Prediction]:
        """Several windows at once; backends that batch on a GPU override this."""
        return [self.predict_window(w) for w in windows]


def check_prediction(prediction: Prediction, backend: EmotionBackend) -> Prediction:
    """``prediction`` if the host can use it, else a ValueError naming the model (a plugin's bug must not reach a
    JSON line, a pool or an OSC stream as NaN or as moods shifted onto the wrong tags): a Prediction with finite
    valence and arousal and one finite probability in [0, 1] per declared mood tag."""
    name = getattr(backend, "name", "") or type(backend).__name__
    if not isinstance(prediction, Prediction):
        raise ValueError(f"model {name!r} returned {type(prediction).__name__}, not a Prediction")
    for axis in ("valence", "arousal"):
        value = getattr(prediction, axis)
        if not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
            raise ValueError(f"model {name!r} returned {axis} {value!r}: not a finite number")
    moods = np.asarray(prediction.mood_probabilities)
    tags = len(backend.mood_tags)
    if moods.shape != (tags,):
        raise ValueError(f"model {name!r} returned mood probabilities of shape {moods.shape} for its {tags} mood tags")
    if tags and not (moods.dtype.kind in "fiub" and np.all((moods >= 0.0) & (moods <= 1.0))):
        raise ValueError(f"model {name!r} returned mood probabilities that are not all finite and within [0, 1]")
    return prediction


def check_backend(backend: EmotionBackend) -> EmotionBackend:
    """``backend`` if the host can run it, else a ValueError naming the model: a positive whole ``sample_rate``
    (the rate its audio is decoded to; a plugin that left it 0 failed later as a division by zero or a traceback in
    ``m2e stream``) and ``mood_tags`` as distinct tag names (a string was read as one tag per letter)."""
    name = getattr(backend, "name", "") or type(backend).__name__
    rate = getattr(backend, "sample_rate", None)
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(rate) and rate > 0 and float(rate).is_integer()):
        raise ValueError(f"model {name!r} has sample_rate {rate!r}: it must be the rate the model wants its audio at, "
                         "a positive whole number of Hz (set on the class, or in __init__ at the latest)")
    tags = getattr(backend, "mood_tags", ())
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags) or len(set(tags)) != len(tags):
        raise ValueError(f"model {name!r} has mood_tags {tags!r}: it must be a tuple of distinct tag names "
                         "(empty for a model without moods)")
    return backend


def resolve_device(device: str | None = "auto") -> str:
    """``"auto"`` picks CUDA when available, else CPU; other values are passed through (``"cuda:1"``, ``"cpu"``)."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", str(device)):  # torch's list of internal types helps nobody
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available (use device='cpu' or 'auto')")
    return str(device)


def get_backend(name: str, *, device: str | None = "auto", **options) -> EmotionBackend:
    """Build the model registered under ``name`` (``"lite"``, ``"music2emo"`` or a plugin's; see ``m2e plugins``).

    Raises ``ValueError`` for an unknown name (listing the available models and any plugin that failed to load), and
    for options the model does not take (``mert=`` given to ``lite``: a raw TypeError before).
    """
    from m2e_plugin.plugins import get_model

    cls = get_model(name).backend
    takes = _option_names(cls)
    unknown = [] if takes is None else sorted(set(options) - takes)
    if unknown:
        raise ValueError(f"model {name!r} takes no {', '.join(unknown)} option{'s' if len(unknown) > 1 else ''} "
                         f"(on the command line: {', '.join('--' + k.replace('_', '-') for k in unknown)}); "
                         f"it takes: {', '.join(sorted(takes - {'device'})) or 'no options'}")
    return check_backend(cls(device=resolve_device(device), **options))


def accepted_options(name: str, options: dict) -> dict:
    """The part of ``options`` the model registered under ``name`` takes (all of them if it takes ``**kwargs``)."""
    from m2e_plugin.plugins import get_model

    takes = _option_names(get_model(name).backend)
    return dict(options) if takes is None else {k: v for k, v in options.items() if k in takes}


def _option_names(cls) -> set[str] | None:
    """The keyword options a backend class's constructor takes; None when it takes any (``**kwargs``)."""
    import inspect

    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return None
    return {k for k, p in parameters.items() if k != "self" and p.kind is not p.VAR_POSITIONAL}
