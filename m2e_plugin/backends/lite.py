"""`lite`: the default, embedded, offline backend (torch descriptors + a small trained head; no downloads).

A track is scored block by block (30 s blocks, the length of the training clips): each block's descriptors go
through the head and the quadrant probabilities are averaged over blocks, weighted by block duration, so memory
stays constant in the track's length. Windows (timeline, realtime) are scored directly; the model was also trained
on 10 s windows. Only the mood tags listed in the model card are emitted.
"""

from __future__ import annotations

from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterable

import numpy as np

from m2e_plugin.backends.base import EmotionBackend, Prediction

# Blocks shorter than this are merged into the previous one's weight only (a 0.2 s tail says little about a track).
_MIN_BLOCK_SECONDS = 2.0
# Audio whose RMS is below this (dBFS) is silence: the descriptors of digital or near-digital silence are outside
# anything the model saw, and it would answer with a confident, arbitrary quadrant.
SILENCE_DBFS = -70.0
_SILENCE_RMS = 10 ** (SILENCE_DBFS / 20)


def is_silent(audio: np.ndarray) -> bool:
    """True when the RMS level of ``audio`` is below :data:`SILENCE_DBFS` (or it has no samples)."""
    x = np.asarray(audio, dtype=np.float64)
    return x.size == 0 or float(np.sqrt(np.mean(x * x))) < _SILENCE_RMS


def default_weights() -> Path:
    """Path of the weights shipped inside the package."""
    return Path(str(resources.files("m2e_plugin.models").joinpath("weights/lite.safetensors")))


class LiteBackend(EmotionBackend):
    """The embedded `lite` model.

    Parameters
    ----------
    device : str
        ``"cpu"`` (recommended: the model is tiny) or a CUDA device.
    weights : path, optional
        Another `lite` checkpoint (``.safetensors`` with its ``.json`` card beside it), e.g. one rebuilt with
        ``m2e train --model lite``.
    threads : int or None
        Torch intra-op threads while lite computes (restored afterwards). Default 1: the descriptors are many small
        ops, and on a busy 2-core machine two threads measured 3-10x slower (spin-waiting); ``None`` leaves
        torch's setting alone.
    """

    name = "lite"
    block_seconds = 30.0
    window_seconds = 10.0
    hop_seconds = 5.0

    def __init__(self, device: str = "cpu", *, weights=None, threads: int | None = 1):
        import torch

        from m2e_plugin.backbones.lite import N_FEATURES, SAMPLE_RATE
        from m2e_plugin.models.lite import load_lite

        self.device = str(device)
        self.weights_path = Path(weights) if weights else default_weights()
        self._model, self._card = load_lite(self.weights_path, device=self.device)
        if self._model.config["n_features"] != N_FEATURES:
            raise ValueError(f"{self.weights_path}: model expects {self._model.config['n_features']} descriptors, "
                             f"the lite front end computes {N_FEATURES} (weights from another version?)")
        tags = tuple(self._card.get("classes", {}).get("mood_tags", ()))
        if len(tags) != self._model.config["n_moods"]:
            raise ValueError(f"{self.weights_path.with_suffix('.json')}: model card lists {len(tags)} mood tags, "
                             f"the weights have {self._model.config['n_moods']}")
        self.mood_tags = tags
        self.sample_rate = SAMPLE_RATE
        self.version = str(self._card.get("version", ""))
        self._torch = torch
        # Temperature fitted on the cross-validation's out-of-fold logits (model card); 1.0 for uncalibrated weights.
        self._temperature = float(self._card.get("calibration", {}).get("quadrant_temperature", 1.0))
        self.threads = threads

    @contextmanager
    def _threads(self):
        torch = self._torch
        if self.threads is None or torch.get_num_threads() == self.threads:
            yield
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(int(self.threads))
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    @property
    def card(self) -> dict:
        return dict(self._card)

    def _score(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.no_grad():
            x = torch.from_numpy(np.atleast_2d(features).astype(np.float32)).to(self.device)
            out = self._model(x)
            q = torch.softmax(out["quadrant"] / self._temperature, -1).cpu().numpy()
            m = torch.sigmoid(out["moods"]).cpu().numpy()
        return q, m

    def _prediction(self, quad: np.ndarray, moods: np.ndarray) -> Prediction:
        pv = float(quad[0] + quad[3])
        pa = float(quad[0] + quad[1])
        return Prediction(valence=1.0 + 8.0 * pv, arousal=1.0 + 8.0 * pa, mood_probabilities=moods.astype(np.float64),
                          extras={"quadrant_probabilities": {f"Q{i + 1}": float(p) for i, p in enumerate(quad)}})

    def _silent_prediction(self) -> Prediction:
        """Documented result for silence: valence 5 (undecided), arousal 1 (no energy), every mood 0."""
        return Prediction(valence=5.0, arousal=1.0, mood_probabilities=np.zeros(len(self.mood_tags)),
                          extras={"silent": True})

    def predict_track(self, blocks: Iterable[np.ndarray]) -> Prediction:
        from m2e_plugin.backbones.lite import clip_features

        feats, weights = [], []
        saw_audio = False
        for block in blocks:
            block = np.asarray(block, dtype=np.float32)
            if block.size == 0:
                continue
            saw_audio = True
            seconds = block.size / self.sample_rate
            if (feats and seconds < _MIN_BLOCK_SECONDS) or is_silent(block):
                continue  # short tail after full blocks; silent passages do not vote
            with self._threads():
                feats.append(clip_features(block, self.sample_rate))
            weights.append(seconds)
        if not feats:
            if saw_audio:
                return self._silent_prediction()
            raise ValueError("lite: no audio to score (all blocks empty)")
        q, m = self._score(np.stack(feats))
        w = np.asarray(weights)[:, None] / np.sum(weights)
        return self._prediction((q * w).sum(0), (m * w).sum(0))

    def predict_window(self, audio: np.ndarray) -> Prediction:
        from m2e_plugin.backbones.lite import clip_features

        if is_silent(audio):
            return self._silent_prediction()
        with self._threads():
            q, m = self._score(clip_features(np.asarray(audio, dtype=np.float32), self.sample_rate))
        return self._prediction(q[0], m[0])

    def predict_windows(self, windows: list[np.ndarray]) -> list[Prediction]:
        from m2e_plugin.backbones.lite import clip_features

        if not windows:
            return []
        results: list[Prediction | None] = [None] * len(windows)
        audible = [i for i, w in enumerate(windows) if not is_silent(w)]
        if audible:
            with self._threads():
                feats = np.stack([clip_features(np.asarray(windows[i], dtype=np.float32), self.sample_rate)
                                  for i in audible])
                q, m = self._score(feats)
            for i, qi, mi in zip(audible, q, m):
                results[i] = self._prediction(qi, mi)
        return [r if r is not None else self._silent_prediction() for r in results]
