"""`Music2emo`: the public Python API, compatible with the original quickstart.

>>> from m2e_plugin import Music2emo
>>> m = Music2emo()                      # model="lite", offline; Music2emo(model="music2emo") for the paper model
>>> out = m.predict("song.mp3")          # or m.predict((samples, sr))
>>> out["valence"], out["arousal"], out["predicted_moods"], out["quadrant"]
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from m2e_plugin.analysis import WindowPrediction, analyse, decode_blocks, iter_windows, sliding_windows, window_settings
from m2e_plugin.audio import AudioInput, audio_source
from m2e_plugin.backends.base import EmotionBackend, Prediction, check_backend, get_backend
from m2e_plugin.labels import quadrant, top_moods

__all__ = ["Music2emo", "sliding_windows"]  # sliding_windows lives in m2e_plugin.analysis; kept importable here


class Music2emo:
    """Music emotion recognition: valence/arousal on the 1-9 scale and MTG-Jamendo mood/theme tags.

    Parameters
    ----------
    model : str or EmotionBackend
        ``lite`` (default) is embedded in the package and runs offline; ``music2emo`` is the paper's model
        (MERT-v1-95M + BTC chords + key + multitask head), fetched through huggingface_hub or given as local paths;
        any other name a plugin registered (``m2e plugins``); or a backend instance already built.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    threshold : float
        Default mood threshold: a tag is predicted when its probability is strictly above it.
    **model_options
        Passed to the backend, e.g. ``mert=``, ``checkpoint=``, ``chord_model=`` for ``music2emo``.
    """

    def __init__(self, model: str | EmotionBackend = "lite", device: str = "auto", *, threshold: float = 0.5,
                 **model_options):
        self.threshold = check_threshold(threshold)  # before the model loads
        self.backend: EmotionBackend = (check_backend(model) if isinstance(model, EmotionBackend)
                                        else get_backend(model, device=device, **model_options))

    @property
    def model_name(self) -> str:
        return self.backend.name

    @property
    def card(self) -> dict[str, Any]:
        return self.backend.card

    def predict(
        self,
        audio: AudioInput,
        threshold: float | None = None,
        *,
        sr: int | None = None,
        timeline: bool = False,
        window: float | None = None,
        hop: float | None = None,
        on_audio: Callable[[float], None] | None = None,
    ) -> dict[str, Any]:
        """Predict emotion for a file path, ``"-"`` (stdin), bytes, a binary file object, ``(samples, sr)`` or
        samples with ``sr=``.

        ``threshold`` comes second, as in the original ``predict(audio_path, threshold=0.5)``; ``sr`` is keyword-only
        (it gives a sample array's rate; a file carries its own, so ``sr=`` with one is an error).

        Returns a dict with ``valence``, ``arousal`` (1-9), ``predicted_moods`` (tags with probability >
        threshold, most probable first), ``mood_probabilities`` ({tag: p} for every tag the model predicts),
        ``quadrant`` ("Q1".."Q4"), ``model``, ``duration`` (seconds), ``key`` (when the model estimates one) and
        ``quadrant_probabilities`` (when the model gives them: ``lite``). With ``timeline=True`` it adds
        ``timeline``: one entry per window (``window``/``hop`` seconds, model defaults otherwise) with ``start``,
        ``end``, ``valence``, ``arousal``, ``quadrant``, ``predicted_moods`` (above ``threshold``) and ``top_moods``
        (the 3 most probable); the input is decoded once for both.
        ``warnings`` lists what decoding lost or the model had to fall back on (see
        :func:`m2e_plugin.audio.stream_audio`; empty when nothing went wrong).
        ``on_audio(seconds)`` is called as the audio is read (seconds read so far), for progress on long files.
        """
        from m2e_plugin.progress import reporting_blocks

        threshold = self.threshold if threshold is None else check_threshold(threshold)
        window, hop = window_settings(self.backend, window, hop)  # checked before any decoding
        warnings: list[dict[str, Any]] = []
        with audio_source(audio) as source:  # stdin, pipes, bytes, file objects: spooled to a readable form
            blocks = reporting_blocks(decode_blocks(self.backend, source, sr, warnings), self.backend.sample_rate,
                                      on_audio)
            result = analyse(self.backend, blocks, track=True, windows=timeline, window=window, hop=hop)
        out = self.format(result.track, threshold)
        out["duration"] = round(result.duration, 3)
        out["warnings"] = warnings + list(result.track.extras.get("warnings", ()))
        if timeline:
            out["timeline"] = [self._timeline_entry(w, threshold) for w in result.windows]
        return out

    def format(self, prediction: Prediction, threshold: float | None = None) -> dict[str, Any]:
        """Turn a backend :class:`Prediction` into the public result dict (no duration/timeline)."""
        threshold = self.threshold if threshold is None else check_threshold(threshold)
        tags = self.backend.mood_tags
        probs = {t: float(p) for t, p in zip(tags, np.asarray(prediction.mood_probabilities, dtype=float))}
        predicted = [t for t, p in sorted(probs.items(), key=lambda kv: -kv[1]) if p > threshold]
        out: dict[str, Any] = {
            "valence": float(prediction.valence),
            "arousal": float(prediction.arousal),
            "predicted_moods": predicted,
            "mood_probabilities": probs,
            "quadrant": quadrant(prediction.valence, prediction.arousal),
            "model": self.backend.name,
        }
        if prediction.key is not None:
            out["key"] = prediction.key
        # Per-prediction reliability that a backend reports (lite: calibrated quadrant probabilities, confidence).
        for name in ("quadrant_probabilities", "confidence"):
            if name in prediction.extras:
                out[name] = prediction.extras[name]
        return out

    def timeline(self, audio: AudioInput, *, sr: int | None = None, window: float | None = None,
                 hop: float | None = None, threshold: float | None = None, top_k: int = 3) -> list[dict[str, Any]]:
        """Per-window predictions over the whole input, streamed (constant memory in the file's length): the
        entries of ``predict(..., timeline=True)["timeline"]``, with ``top_k`` top moods."""
        threshold = self.threshold if threshold is None else check_threshold(threshold)
        top_k = check_top_k(top_k)
        window, hop = window_settings(self.backend, window, hop)
        with audio_source(audio) as source:
            windows = iter_windows(self.backend, decode_blocks(self.backend, source, sr), window=window, hop=hop)
            return [self._timeline_entry(w, threshold, top_k) for w in windows]

    def _timeline_entry(self, w: WindowPrediction, threshold: float, top_k: int = 3) -> dict[str, Any]:
        formatted = self.format(w.prediction, threshold)
        return {
            "start": round(w.start, 3),
            "end": round(w.end, 3),
            "valence": formatted["valence"],
            "arousal": formatted["arousal"],
            "quadrant": formatted["quadrant"],
            "predicted_moods": formatted["predicted_moods"],
            "top_moods": top_moods(formatted["mood_probabilities"], top_k),
        }


def check_top_k(top_k) -> int:
    """``top_k`` as an int >= 0, or ValueError (a negative one sliced from the end: -1 meant "all but one")."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"top_k is a number of moods >= 0, got {top_k!r}")
    return int(top_k)


def check_threshold(threshold) -> float:
    """The mood threshold as a float, or ValueError: outside [0, 1] no tag (above 1) or every tag (below 0) passes."""
    value = float(threshold)
    if not 0.0 <= value <= 1.0:  # NaN included
        # predict(samples, 22050) reads 22050 as the threshold (the original's second argument): say where it goes.
        hint = "; a sample rate goes in sr= or in a (samples, sr) tuple" if value >= 1000 else ""
        raise ValueError(f"threshold is a probability between 0 and 1, got {threshold!r}{hint}")
    return value
