"""The faithful Music2Emo backend: MERT-v1-95M layers 6+7 + chords + key -> multitask head.

Per track (``predict_track``), from 30 s blocks at 24 kHz streamed by the predictor:

1. MERT embedding of each block (= the reference's 30 s segments, trailing partial segment kept), averaged
   with equal weight over segments -> ``x_mert`` (1536,).
2. Chords of each block with :mod:`m2e_plugin.harmony` (BTC large-vocabulary when its weights are given or
   cached, else the offline recogniser), offset to track time and joined (a chord running across a block
   boundary stays one segment). Every result says which (``key["chords_method"]``); ``chords="auto"`` falling
   back to the offline recogniser is also a warning on stderr and in every result's ``warnings``;
   ``chords="btc"`` without BTC weights is an error.
3. Key from the chord sequence (:func:`~m2e_plugin.harmony.key_from_chords`, the reference's Aarden-Essen method),
   chords transposed and tokenised with :func:`~m2e_plugin.harmony.encode_music2emo` (100 tokens).
4. Head forward; sigmoid on the mood logits; valence/arousal raw on the 1-9 scale.

Reference quirk (section 2.6 of the reference notes): its inference script always feeds key mode 0 (major),
while training used the estimated mode. ``key_input="estimated"`` (default) feeds the estimated mode, matching
how the head was trained and evaluated in the paper; ``key_input="major"`` reproduces the reference script's
(and HF Space's) outputs exactly.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Sequence

import numpy as np

from m2e_plugin.backbones.level import SILENCE_FLOOR_DBFS
from m2e_plugin.backends.base import EmotionBackend, Prediction
from m2e_plugin.labels import MOOD_TAGS

KEY_INPUTS = ("estimated", "major")
CHORD_METHODS = ("auto", "btc", "offline")
# A track whose peak stays below the level module's silence floor is silent.
SILENT_PEAK = 10 ** (SILENCE_FLOOR_DBFS / 20)

log = logging.getLogger(__name__)


def check_chords(chords: str, chord_model) -> None:
    """ValueError for an unknown chord method, or BTC weights given with ``chords='offline'`` (a contradiction, not
    a choice to make silently); inference and the training features both check their options here."""
    if chords not in CHORD_METHODS:
        raise ValueError(f"chords must be one of {', '.join(CHORD_METHODS)}, got {chords!r}")
    if chords == "offline" and chord_model is not None:
        raise ValueError(f"chord_model={chord_model!r} (--chord-model) and chords='offline' (--chords offline) "
                         "contradict each other: BTC is not used offline; drop one")


def chords_fallback_warning(why: str) -> dict[str, str]:
    """The warning ``--chords auto`` gives when BTC's weights cannot be had (logged, and carried by every result):
    the offline recogniser's chords are not those ``J_all.ckpt`` was trained with."""
    from m2e_plugin.hub import ENV_CHORD_MODEL

    message = (f"BTC chord weights unavailable ({why}): chords come from the offline recogniser, not from the BTC "
               f"model J_all.ckpt was trained with; give them with --chord-model / chord_model= / "
               f"${ENV_CHORD_MODEL}, or choose --chords offline")
    log.warning("music2emo: %s", message)
    return {"code": "chords_fallback", "message": message}


def join_chords(chords: list[tuple[float, float, str]], more: Sequence[Sequence], offset: float) -> None:
    """Append ``more`` (times relative to a block) shifted by ``offset``; merge a label continuing across the join."""
    for start, end, label in more:
        start, end = float(start) + offset, float(end) + offset
        if end <= start:
            continue
        if chords and chords[-1][2] == label and abs(chords[-1][1] - start) < 1e-3:
            chords[-1] = (chords[-1][0], end, label)
        else:
            chords.append((start, end, str(label)))


class Music2EmoHarmony:
    """Supplies Music2Emo's chord/key inputs: chords per block, key from chords, token ids.

    Parameters
    ----------
    chord_model : path, optional
        BTC ``btc_model_large_voca.pt``; ``None`` uses the offline recogniser.
    device : str
        Torch device for BTC or the offline recogniser's transcription network.
    """

    def __init__(self, chord_model=None, device: str = "cpu"):
        from m2e_plugin import harmony

        self._harmony = harmony
        self.btc = harmony.load_btc(str(chord_model), device=device) if chord_model is not None else None
        self.method = "btc" if self.btc is not None else "offline"
        self.device = device

    def chords(self, audio: np.ndarray, sr: int) -> list[tuple[float, float, str]]:
        """Chord segments ``(start_s, end_s, label)`` of one block."""
        if self.btc is not None:
            return list(self.btc.recognize(audio, sr))
        return list(self._harmony.recognize_chords(audio, sr, method="offline", device=self.device))

    def encode(self, chords, key_input: str = "estimated") -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]]:
        """Return ``(root_ids[100], attr_ids[100], key_mode_id, key_dict)`` for a track's chord sequence."""
        tonic, mode, confidence = self._harmony.key_from_chords(chords)
        roots, attrs = self._harmony.encode_music2emo(chords, tonic, mode)
        mode_id = self._harmony.mode_id(mode) if key_input == "estimated" else 0
        key = {"tonic": tonic, "mode": mode, "confidence": round(float(confidence), 4),
               "method": "chords/aarden-essen", "chords_method": self.method}
        return np.asarray(roots, dtype=np.int64), np.asarray(attrs, dtype=np.int64), int(mode_id), key


class Music2EmoBackend(EmotionBackend):
    """Music2Emo (Kang & Herremans 2025) inference; see the module docstring.

    Parameters
    ----------
    device : str
        Torch device (the predictor passes the resolved ``"auto"``).
    mert : str or path, optional
        MERT directory or hub id (default ``m-a-p/MERT-v1-95M`` via the hub cache, or ``$M2E_MERT``).
    checkpoint : str or path, optional
        Head checkpoint (default ``amaai-lab/music2emo`` ``saved_models/J_all.ckpt``, or ``$M2E_CHECKPOINT``).
    chord_model : str or path, optional
        BTC weights (default the HF Space's ``btc_model_large_voca.pt``, or ``$M2E_CHORD_MODEL``).
    chords : {"auto", "btc", "offline"}
        ``auto`` uses BTC when its weights are available, else the offline recogniser (with a warning); ``btc``
        requires BTC (``WeightsUnavailableError`` without it); ``offline`` never looks for it.
    key_input : {"estimated", "major"}
        Key-mode token fed to the head (see the module docstring).
    local_files_only : bool, optional
        Hub cache only (default: ``HF_HUB_OFFLINE``).
    cache_dir : path, optional
        Hub cache directory.
    """

    name = "music2emo"
    version = "1.0"
    sample_rate = 24000
    block_seconds = 30.0
    window_seconds = 10.0
    hop_seconds = 5.0
    mood_tags = MOOD_TAGS
    predicts_key = True  # the key estimated from the chords (extractors write tonal.key_music2emo.*)

    def __init__(self, device: str = "cpu", mert=None, checkpoint=None, chord_model=None, *,
                 chords: str = "auto", key_input: str = "estimated", local_files_only: bool | None = None,
                 cache_dir=None):
        import torch

        from m2e_plugin.backbones.mert import MUSIC2EMO_LAYERS, load_mert
        from m2e_plugin.hub import resolve_music2emo_weights
        from m2e_plugin.models.music2emo import load_music2emo_head

        if key_input not in KEY_INPUTS:
            raise ValueError(f"key_input must be one of {KEY_INPUTS}, got {key_input!r}")
        check_chords(chords, chord_model)
        self.device = str(device)
        self.key_input = key_input
        self.weights = resolve_music2emo_weights(mert, checkpoint, chord_model, local_files_only=local_files_only,
                                                 cache_dir=cache_dir, use_btc=chords != "offline",
                                                 require_btc=chords == "btc")
        self.warnings: list[dict[str, str]] = []  # carried by every prediction
        # Layers after the last one Music2Emo reads (7 of 12) would cost 5/12 of MERT's time for nothing.
        self.mert = load_mert(self.weights.mert, device=self.device, last_layer=max(MUSIC2EMO_LAYERS))
        self.head = load_music2emo_head(self.weights.checkpoint, device=self.device)
        if self.head.ignored_tensors:
            ignored = self.head.ignored_tensors
            message = (f"{self.weights.checkpoint} holds {len(ignored)} tensor(s) the Music2Emo head does not use "
                       f"(e.g. {', '.join(ignored[:3])}): they are ignored, so a model with extra layers is not "
                       "reproduced")
            log.warning("music2emo: %s", message)
            self.warnings.append({"code": "checkpoint_extra_tensors", "message": message})
        if self.mert.config.hidden_size * 2 != self.head.input_proj[0].in_features - 9:
            raise ValueError(f"MERT {self.weights.mert} (hidden {self.mert.config.hidden_size}) does not match head "
                             f"{self.weights.checkpoint} (expects {self.head.input_proj[0].in_features - 9}-d input)")
        self.harmony = Music2EmoHarmony(self.weights.chord_model, device=self.device)
        if chords == "auto" and self.weights.chord_model is None:
            # Said once the model has loaded: a checkpoint that then failed to load was preceded by a fallback
            # notice about chords for a model that never ran.
            self.warnings.insert(0, chords_fallback_warning(self.weights.notes.get("chord_model", "unavailable")))
        self._torch = torch
        # MERT batch size for equal-length timeline windows: batching pays off on a GPU, not on a CPU.
        self.window_batch = 8 if self.device.startswith("cuda") else 1
        # Seconds spent per stage in the last predict_track call (the benchmark reads them).
        self.last_timings: dict[str, float] = {}

    @property
    def card(self) -> dict[str, Any]:
        card = super().card
        card.update({
            "description": "Music2Emo (Kang & Herremans 2025): MERT-v1-95M hidden states 6+7 (1536-d, 30 s "
                           "segments, averaged) + chord sequence + key mode -> multitask head (FeedforwardModelMTAttnCK)",
            "block_seconds": self.block_seconds,
            "window_seconds": self.window_seconds,
            "hop_seconds": self.hop_seconds,
            "outputs": {"valence": "raw regression output, 1-9 scale", "arousal": "raw regression output, 1-9 scale",
                        "mood_probabilities": "sigmoid of 56 logits, MTG-Jamendo mood/theme order"},
            "chord_recognizer": self.harmony.method,
            "key_input": self.key_input,
            "weights": {"mert": str(self.weights.mert), "checkpoint": str(self.weights.checkpoint),
                        "chord_model": str(self.weights.chord_model) if self.weights.chord_model else None},
            "weight_sources": dict(self.weights.sources),
            "training_data": "MTG-Jamendo moodtheme split-0 + DEAM + EmoMusic + PMEmo (multitask + KD, J_all.ckpt)",
            "metrics": {"source": "published by the authors (paper/README, J+D+E+P), not measured by m2e",
                        "jamendo_pr_auc": 0.1543, "jamendo_roc_auc": 0.7810,
                        "deam_r2_valence": 0.5184, "deam_r2_arousal": 0.6228,
                        "emomusic_r2_valence": 0.6512, "emomusic_r2_arousal": 0.7616,
                        "pmemo_r2_valence": 0.5473, "pmemo_r2_arousal": 0.7940},
            "licence": "code MIT; MERT weights CC-BY-NC-4.0 (non-commercial); BTC MIT",
        })
        return card

    # -- stages ---------------------------------------------------------------------------------------------------
    def _head(self, x_mert: np.ndarray, roots, attrs, mode_ids) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        dev = torch.device(self.device)
        with torch.inference_mode():
            logits, va = self.head(
                torch.as_tensor(np.atleast_2d(x_mert), dtype=torch.float32, device=dev),
                torch.as_tensor(np.atleast_2d(roots), dtype=torch.long, device=dev),
                torch.as_tensor(np.atleast_2d(attrs), dtype=torch.long, device=dev),
                torch.as_tensor(np.asarray(mode_ids).reshape(-1, 1), dtype=torch.long, device=dev),
            )
            return torch.sigmoid(logits).float().cpu().numpy(), va.float().cpu().numpy()

    def _prediction(self, probs, va, key, n_chords: int, n_segments: int, peak: float | None = None) -> Prediction:
        warnings = list(self.warnings)
        if peak is not None and peak < SILENT_PEAK:
            # The faithful head has no notion of confidence: on silence it still answers (its biases, many moods).
            # The answer is kept, as the reference gives it, but not passed off as a reading of music.
            warnings.append({"code": "silent_input",
                             "message": f"the audio is silent (peak below {SILENCE_FLOOR_DBFS:.0f} dBFS): valence, "
                                        "arousal and moods reflect the model's biases, not the music"})
        return Prediction(valence=float(va[0]), arousal=float(va[1]), mood_probabilities=np.asarray(probs),
                          key=key, extras={"chord_recognizer": self.harmony.method, "key_input": self.key_input,
                                           "chord_segments": n_chords, "mert_segments": n_segments,
                                           "warnings": warnings})

    def predict_track(self, blocks: Iterable[np.ndarray]) -> Prediction:
        """Whole-track prediction from consecutive 30 s blocks at 24 kHz (see the module docstring)."""
        from m2e_plugin.backbones.mert import segment_embedding

        timings = {"decode": 0.0, "mert": 0.0, "harmony": 0.0, "head": 0.0}
        total = None
        n_segments = 0
        chords: list[tuple[float, float, str]] = []
        offset = 0.0
        peak = 0.0
        iterator = iter(blocks)
        while True:
            t0 = time.perf_counter()
            try:
                block = next(iterator)
            except StopIteration:
                break
            finally:
                timings["decode"] += time.perf_counter() - t0
            block = np.asarray(block, dtype=np.float32)
            if block.size == 0:
                continue
            peak = max(peak, float(np.max(np.abs(block))))
            t0 = time.perf_counter()
            emb = segment_embedding(self.mert, block).astype(np.float64)
            total = emb if total is None else total + emb
            n_segments += 1
            t1 = time.perf_counter()
            join_chords(chords, self.harmony.chords(block, self.sample_rate), offset)
            timings["mert"] += t1 - t0
            timings["harmony"] += time.perf_counter() - t1
            offset += block.size / self.sample_rate
        if total is None:
            raise ValueError("no audio to analyse (zero samples)")
        t0 = time.perf_counter()
        roots, attrs, mode, key = self.harmony.encode(chords, self.key_input)
        t1 = time.perf_counter()
        probs, va = self._head((total / n_segments).astype(np.float32), roots, attrs, mode)
        timings["harmony"] += t1 - t0
        timings["head"] += time.perf_counter() - t1
        self.last_timings = timings
        return self._prediction(probs[0], va[0], key, len(chords), n_segments, peak)

    def predict_windows(self, windows: list[np.ndarray]) -> list[Prediction]:
        """Timeline windows: MERT batched over equal-length windows (GPU-friendly), chords per window."""
        from m2e_plugin.backbones.mert import MUSIC2EMO_LAYERS, mert_hidden_means, split_segments

        results: list[Prediction] = []
        batch = max(1, int(self.window_batch))
        windows = [np.asarray(w, dtype=np.float32) for w in windows]
        embeddings: list[np.ndarray | None] = [None] * len(windows)
        # Windows longer than a segment are split like a track; equal-length single-segment windows batch.
        simple = [i for i, w in enumerate(windows) if 0 < w.size <= self.block_seconds * self.sample_rate]
        by_len: dict[int, list[int]] = {}
        for i in simple:
            by_len.setdefault(windows[i].size, []).append(i)
        for idx in by_len.values():
            for s in range(0, len(idx), batch):
                chunk = idx[s : s + batch]
                means = mert_hidden_means(self.mert, [windows[i] for i in chunk])
                for i, m in zip(chunk, means):
                    embeddings[i] = np.concatenate([m[layer] for layer in MUSIC2EMO_LAYERS])
        for i, w in enumerate(windows):
            if embeddings[i] is None:
                if w.size == 0:
                    raise ValueError("empty analysis window")
                segs = split_segments(w, self.sample_rate, self.block_seconds)
                means = [mert_hidden_means(self.mert, [s])[0] for s in segs]
                embeddings[i] = np.mean([np.concatenate([m[layer] for layer in MUSIC2EMO_LAYERS]) for m in means], axis=0)
            chords: list[tuple[float, float, str]] = []
            join_chords(chords, self.harmony.chords(w, self.sample_rate), 0.0)
            roots, attrs, mode, key = self.harmony.encode(chords, self.key_input)
            probs, va = self._head(embeddings[i].astype(np.float32), roots, attrs, mode)
            results.append(self._prediction(probs[0], va[0], key, len(chords), 1))
        return results

    def predict_window(self, audio: np.ndarray) -> Prediction:
        """One analysis window at 24 kHz (any length; shorter than 400 samples is zero-padded)."""
        return self.predict_windows([audio])[0]
