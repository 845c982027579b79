"""`lite` (version 2): the default, embedded, offline backend — musicnn embeddings + a trained quadrant head, and the
MTG-Jamendo mood/theme CNN for all 56 tags. No downloads; CPU-friendly.

Per input (a 30 s block of a track, or a window):

1. level normalisation (:mod:`m2e_plugin.backbones.level`): the answer does not move with the volume;
2. musicnn MSD penultimate embeddings and (for a head with that member) musicnn MTT pooled vectors of
   non-overlapping 3 s patches (:func:`~m2e_plugin.backbones.musicnn.embed_audio`; blocks use every other patch, as
   the head was trained and validated, windows every patch), averaged over the whole track
   (:func:`~m2e_plugin.models.lite.pool_embeddings`);
3. the head's (:class:`~m2e_plugin.models.lite.LiteEnsemble`) temperature-calibrated quadrant probabilities,
   shrunk toward uniform by ``1 - confidence`` where the input is short (less than ``full_confidence_seconds`` of
   audio) or quiet (gated level between the silence floor and ``full_confidence_dbfs``); ``quadrant_probabilities``
   and ``confidence`` are returned in ``extras``;
4. valence/arousal on 1-9 from the quadrant probabilities (:func:`~m2e_plugin.models.lite.valence_arousal`);
5. the 56 mood probabilities from :class:`m2e_plugin.backbones.moodtheme.MoodTagger` (calibrated so that 0.5 is each
   tag's threshold), averaged over blocks weighted by duration, then scaled by ``confidence``: short or quiet input
   predicts fewer moods, and the scale ends at silence's answer (every mood 0) as confidence reaches 0; last, made
   coherent with the quadrant (:func:`~m2e_plugin.models.lite.cohere_moods`: a mood on the less probable side of
   the valence or arousal axis fades).

Quiet input (between the silence floor and ``full_confidence_dbfs``) glides toward silence's answer: valence toward
5, arousal toward 1, linearly in dB, so a fade-out meets silence without a jump.

Silence (every block below the level module's silence floor) gives the documented neutral answer: valence 5,
arousal 1, every mood 0, confidence 0.
"""

from __future__ import annotations

from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterable

import numpy as np

from m2e_plugin.backends.base import EmotionBackend, Prediction

# Blocks shorter than this after full blocks add nothing but noise to a track's answer (a 0.2 s tail).
_MIN_TAIL_SECONDS = 2.0
# A block uses every other 3 s patch: 5 per 30 s block (as good as 10 in cross-validation, half the cost).
TRACK_PATCH_STEP = 2
# Silence's arousal (no energy); quiet input between the floor and full_confidence_dbfs glides to it.
SILENT_AROUSAL = 1.0


def default_weights() -> Path:
    """Path of the head weights shipped inside the package."""
    return Path(str(resources.files("m2e_plugin.models").joinpath("weights/lite.safetensors")))


class LiteBackend(EmotionBackend):
    """The embedded `lite` model.

    Parameters
    ----------
    device : str
        ``"cpu"`` (recommended: the networks are small) or a CUDA device.
    weights : path, optional
        Another `lite` head (``.safetensors`` with its ``.json`` card beside it), e.g. one rebuilt with
        ``m2e train --model lite``.
    threads : int or None
        Torch intra-op threads while lite computes (restored afterwards). Default 1: on a busy 2-core machine more
        threads measured slower (spin-waiting); ``None`` leaves torch's setting alone.
    """

    name = "lite"
    block_seconds = 30.0
    window_seconds = 10.0
    hop_seconds = 5.0
    # Batch workers use one torch thread: the small convolutions gain little from more, and on a busy machine torch's
    # default (all cores) oversubscribes (benchmarks/bench_extract.py).
    torch_threads = 1

    def __init__(self, device: str = "cpu", *, weights=None, threads: int | None = 1):
        import torch

        from m2e_plugin.backbones.moodtheme import MoodTagger
        from m2e_plugin.backbones.musicnn import PENULTIMATE_DIM, POOLED_DIM, SAMPLE_RATE, load_musicnn
        from m2e_plugin.labels import MOOD_TAGS
        from m2e_plugin.models.lite import load_lite

        self.device = str(device)
        if weights is not None and not str(weights).strip():  # --checkpoint "" (an unset shell variable)
            raise ValueError("weights: an empty path (leave it out for the embedded weights)")
        self.weights_path = Path(weights) if weights is not None else default_weights()
        self._head, self._card = load_lite(self.weights_path, device=self.device)
        self._pooling = str(self._card.get("features", {}).get("pooling", "mean"))
        per_patch = {"msd_penultimate": PENULTIMATE_DIM, "mtt_pooled": POOLED_DIM}
        for kind, member in self._head.config["members"].items():
            expected = per_patch[kind] * (2 if self._pooling == "mean_std" else 1)
            if member["n_features"] != expected:
                raise ValueError(f"{self.weights_path}: head member {kind} expects {member['n_features']} inputs, "
                                 f"{self._pooling!r} pooling of musicnn gives {expected}")
        self._musicnn = load_musicnn().to(self.device)
        # The MTT network runs only for heads that read it (lite 2.1); a 2.0 head needs the MSD network alone.
        self._mtt = (load_musicnn(checkpoint="MTT_musicnn").to(self.device)
                     if "mtt_pooled" in self._head.config["members"] else None)
        self._moods = MoodTagger.load()
        self.mood_tags = tuple(MOOD_TAGS)
        self.sample_rate = SAMPLE_RATE
        self.version = str(self._card.get("version", ""))
        self._torch = torch
        outputs = self._card.get("valence_arousal", {})
        self._temperature = float(self._card.get("calibration", {}).get("quadrant_temperature", 1.0))
        self._va_scale = float(outputs.get("scale", 2.5))
        self._full_seconds = float(outputs.get("full_confidence_seconds", 3.0))
        self._full_dbfs = float(outputs.get("full_confidence_dbfs", -60.0))
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

    def confidence(self, seconds: float, level_dbfs: float) -> float:
        """1 for at least ``full_confidence_seconds`` of audio at or above ``full_confidence_dbfs``; less, down to
        0, for shorter or quieter input (square root in duration, linear in dB above the silence floor)."""
        by_length, by_level = self._confidence_factors(seconds, level_dbfs)
        return by_length * by_level

    def _confidence_factors(self, seconds: float, level_dbfs: float) -> tuple[float, float]:
        from m2e_plugin.backbones.level import SILENCE_FLOOR_DBFS

        by_length = min(1.0, max(seconds, 0.0) / self._full_seconds) ** 0.5
        by_level = float(np.clip((level_dbfs - SILENCE_FLOOR_DBFS) / (self._full_dbfs - SILENCE_FLOOR_DBFS), 0, 1))
        return by_length, by_level

    def _embed(self, audio: np.ndarray, patch_step: int):
        from m2e_plugin.backbones.musicnn import embed_audio

        return embed_audio(self._musicnn, audio, patch_step=patch_step, pooled_by=self._mtt)

    @staticmethod
    def _features(emb) -> dict[str, np.ndarray]:
        """{feature kind: (P, d) patch features} of one :class:`PatchEmbeddings`."""
        return {"msd_penultimate": emb.penultimate,
                **({"mtt_pooled": emb.pooled} if emb.pooled is not None else {})}

    def _prediction(self, features: dict[str, np.ndarray], moods: np.ndarray, seconds: float, level_dbfs: float
                    ) -> Prediction:
        from m2e_plugin.models.lite import (axis_probabilities, cohere_moods, pool_embeddings, quadrant_softmax,
                                            shrink_quadrants, valence_arousal, with_marginals)

        torch = self._torch
        x = {kind: torch.from_numpy(pool_embeddings(features[kind], self._pooling)[None]).to(self.device)
             for kind in self._head.config["members"]}
        with torch.inference_mode():
            logits = self._head(x)["quadrant"].cpu().numpy()[0]
        by_length, by_level = self._confidence_factors(seconds, level_dbfs)
        confidence = by_length * by_level
        quad = shrink_quadrants(quadrant_softmax(logits, self._temperature), confidence)
        valence, arousal = valence_arousal(quad, self._va_scale)
        # Input fading toward the silence floor glides to silence's arousal instead of the neutral 5, so a fade-out
        # ends where silence begins (it rose to 5 and then dropped to 1 at the floor). Short input at a normal
        # level still shrinks toward 5: a brief excerpt is not evidence of calm.
        arousal -= (5.0 - SILENT_AROUSAL) * (1.0 - by_level)
        if by_level < 1.0:  # the quadrant probabilities follow the glide: a quiet pool said Q4 at 0.245 < Q1's 0.257
            quad = with_marginals(quad, axis_probabilities(quad)[0], 0.5 + (arousal - 5.0) / (2.0 * self._va_scale))
        # The mood tagger answers a 0.1 s blip as firmly as a song (a dozen moods); its evidence is as thin as the
        # head's, so moods shrink with the same confidence, toward silence's "no mood". Then moods that contradict
        # the quadrant's more probable side fade (cohere_moods).
        moods = cohere_moods(confidence * np.asarray(moods, dtype=np.float64), quad, self.mood_tags)
        return Prediction(valence=float(valence), arousal=float(arousal), mood_probabilities=moods,
                          extras={"quadrant_probabilities": {f"Q{i + 1}": float(p) for i, p in enumerate(quad)},
                                  "confidence": round(confidence, 4)})

    def _silent_prediction(self) -> Prediction:
        """Documented result for silence: valence 5 (undecided), arousal 1 (no energy), every mood 0; the quadrant
        probabilities say the same: Q3 and Q4 0.5 each (the quadrant read off valence 5 is Q4)."""
        return Prediction(valence=5.0, arousal=SILENT_AROUSAL, mood_probabilities=np.zeros(len(self.mood_tags)),
                          extras={"silent": True, "confidence": 0.0,
                                  "quadrant_probabilities": {"Q1": 0.0, "Q2": 0.0, "Q3": 0.5, "Q4": 0.5}})

    def predict_track(self, blocks: Iterable[np.ndarray]) -> Prediction:
        patches, moods, seconds, levels = [], [], [], []
        saw_audio = False
        for block in blocks:
            block = np.asarray(block, dtype=np.float32)
            if block.size == 0:
                continue
            saw_audio = True
            duration = block.size / self.sample_rate
            if seconds and duration < _MIN_TAIL_SECONDS:
                continue
            with self._threads():
                emb = self._embed(block, TRACK_PATCH_STEP)
                if emb.silent:
                    continue  # silent passages do not vote
                moods.append(self._moods.predict_moods(block, self.sample_rate))
            patches.append(self._features(emb))
            seconds.append(duration)
            levels.append(emb.level_dbfs)
        if not patches:
            if saw_audio:
                return self._silent_prediction()
            raise ValueError("lite: no audio to score (all blocks empty)")
        w = np.asarray(seconds) / np.sum(seconds)
        with self._threads():
            return self._prediction({k: np.concatenate([p[k] for p in patches]) for k in patches[0]},
                                    (np.stack(moods) * w[:, None]).sum(0), float(np.sum(seconds)),
                                    float(np.dot(w, levels)))

    def predict_window(self, audio: np.ndarray) -> Prediction:
        return self.predict_windows([audio])[0]

    def predict_windows(self, windows: list[np.ndarray]) -> list[Prediction]:
        results: list[Prediction] = []
        with self._threads():
            embedded = [self._embed(np.asarray(w, dtype=np.float32), 1) for w in windows]
            audible = [i for i, e in enumerate(embedded) if not e.silent and np.asarray(windows[i]).size]
            moods = {}
            # The mood tagger batches windows of one length (a timeline's last window may be shorter).
            for length in sorted({np.asarray(windows[i]).size for i in audible}):
                same = [i for i in audible if np.asarray(windows[i]).size == length]
                for i, p in zip(same, self._moods.predict_windows([windows[i] for i in same], self.sample_rate)):
                    moods[i] = p
            for i, emb in enumerate(embedded):
                if i not in moods:
                    results.append(self._silent_prediction())
                    continue
                results.append(self._prediction(self._features(emb), moods[i], np.asarray(windows[i]).size /
                                                self.sample_rate, emb.level_dbfs))
        return results
