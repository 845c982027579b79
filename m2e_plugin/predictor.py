"""`Music2emo`: the public Python API, compatible with the original quickstart.

>>> from m2e_plugin import Music2emo
>>> m = Music2emo()                      # model="lite", offline; Music2emo(model="music2emo") for the paper model
>>> out = m.predict("song.mp3")          # or m.predict((samples, sr))
>>> out["valence"], out["arousal"], out["predicted_moods"], out["quadrant"]
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from m2e_plugin.audio import AudioInput, load_audio, stream_audio
from m2e_plugin.backends.base import EmotionBackend, Prediction, get_backend
from m2e_plugin.labels import quadrant


class Music2emo:
    """Music emotion recognition: valence/arousal on the 1-9 scale and MTG-Jamendo mood/theme tags.

    Parameters
    ----------
    model : {"lite", "music2emo"}
        ``lite`` (default) is embedded in the package and runs offline; ``music2emo`` is the paper's model
        (MERT-v1-95M + BTC chords + key + multitask head), fetched through huggingface_hub or given as local paths.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    threshold : float
        Default mood threshold: a tag is predicted when its probability is strictly above it.
    **model_options
        Passed to the backend, e.g. ``mert=``, ``checkpoint=``, ``chord_model=`` for ``music2emo``.
    """

    def __init__(self, model: str = "lite", device: str = "auto", *, threshold: float = 0.5, **model_options):
        self.backend: EmotionBackend = get_backend(model, device=device, **model_options)
        self.threshold = float(threshold)

    @property
    def model_name(self) -> str:
        return self.backend.name

    @property
    def card(self) -> dict[str, Any]:
        return self.backend.card

    def predict(
        self,
        audio: AudioInput,
        sr: int | None = None,
        threshold: float | None = None,
        *,
        timeline: bool = False,
        window: float | None = None,
        hop: float | None = None,
    ) -> dict[str, Any]:
        """Predict emotion for a file path or ``(samples, sr)``.

        Returns a dict with ``valence``, ``arousal`` (1-9), ``predicted_moods`` (tags with probability >
        threshold, most probable first), ``mood_probabilities`` ({tag: p} for every tag the model predicts),
        ``quadrant`` ("Q1".."Q4"), ``model``, ``duration`` (seconds) and ``key`` (when the model estimates one).
        With ``timeline=True`` it adds ``timeline``: one entry per window (``window``/``hop`` seconds, model
        defaults otherwise) with ``start``, ``end``, ``valence``, ``arousal``, ``quadrant`` and ``top_moods``.
        """
        threshold = self.threshold if threshold is None else float(threshold)
        backend = self.backend
        blocks, duration_box = self._blocks(audio, sr)
        result = self.format(backend.predict_track(blocks), threshold)
        result["duration"] = round(duration_box[0], 3)
        if timeline:
            result["timeline"] = self.timeline(audio, sr, window=window, hop=hop, threshold=threshold)
        return result

    def format(self, prediction: Prediction, threshold: float | None = None) -> dict[str, Any]:
        """Turn a backend :class:`Prediction` into the public result dict (no duration/timeline)."""
        threshold = self.threshold if threshold is None else float(threshold)
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

    def timeline(self, audio: AudioInput, sr: int | None = None, *, window: float | None = None,
                 hop: float | None = None, threshold: float | None = None, top_k: int = 3) -> list[dict[str, Any]]:
        """Per-window predictions over the whole input, streamed (constant memory in the file's length)."""
        backend = self.backend
        # "is None", not "or": an explicit 0 is an error to report, not a request for the default.
        window = float(backend.window_seconds if window is None else window)
        hop = float(backend.hop_seconds if hop is None else hop)
        if not (window > 0 and hop > 0):  # also rejects NaN
            raise ValueError(f"window and hop must be positive, got window={window}, hop={hop}")
        blocks, _ = self._blocks(audio, sr)
        entries = []
        pending: list[tuple[float, np.ndarray]] = []

        def flush():
            # Windows go to the backend in small groups so GPU backends can batch them (predict_windows).
            for (start, segment), p in zip(pending, backend.predict_windows([seg for _, seg in pending])):
                formatted = self.format(p, threshold)
                probs = formatted["mood_probabilities"]
                entries.append({
                    "start": round(start, 3),
                    "end": round(start + segment.size / backend.sample_rate, 3),
                    "valence": formatted["valence"],
                    "arousal": formatted["arousal"],
                    "quadrant": formatted["quadrant"],
                    "top_moods": sorted(probs, key=probs.get, reverse=True)[:top_k],
                })
            pending.clear()

        for start, segment in sliding_windows(blocks, backend.sample_rate, window, hop):
            pending.append((start, segment.copy()))  # copy: the window may be a view of a reused buffer
            if len(pending) == 8:
                flush()
        flush()
        return entries

    def _blocks(self, audio: AudioInput, sr: int | None) -> tuple[Iterator[np.ndarray], list[float]]:
        """Stream the input as backend-rate blocks; the returned box holds the duration once consumed."""
        backend = self.backend
        duration_box = [0.0]

        def generate():
            if isinstance(audio, (tuple, np.ndarray)):
                samples, _ = load_audio(audio, sr=sr, target_sr=backend.sample_rate)
                step = max(1, int(backend.block_seconds * backend.sample_rate))
                it = (samples[i : i + step] for i in range(0, samples.size, step))
            else:
                it = stream_audio(audio, backend.sample_rate, block_seconds=backend.block_seconds)
            for block in it:
                duration_box[0] += block.size / backend.sample_rate
                yield block

        return generate(), duration_box


def sliding_windows(blocks, sample_rate: int, window: float, hop: float) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(start_seconds, samples)`` windows of ``window`` s every ``hop`` s from a stream of blocks.

    Audio shorter than one window gives one (short) window; the tail that a full hop would skip gets a final
    window ending at the end of the audio, so every sample is covered.
    """
    win = max(1, int(round(window * sample_rate)))
    step = max(1, int(round(hop * sample_rate)))
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0  # absolute sample index of buffer[0]
    next_start = 0
    last_end = 0
    for block in blocks:
        buffer = np.concatenate([buffer, np.asarray(block, dtype=np.float32)])
        while next_start + win <= offset + buffer.size:
            local = next_start - offset
            yield next_start / sample_rate, buffer[local : local + win]
            last_end = next_start + win
            next_start += step
        # Keep at least one window of history so the final, end-aligned window can always be cut.
        drop = min(next_start - offset, buffer.size - win)
        if drop > 0:
            buffer = buffer[drop:]
            offset += drop
    total = offset + buffer.size
    if total == 0:
        return
    if last_end < total:
        start = max(0, total - win)
        yield start / sample_rate, buffer[start - offset :]
