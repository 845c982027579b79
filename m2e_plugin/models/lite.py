"""The `lite` head (v2): pooled musicnn embeddings -> Russell quadrant, and the quadrant -> valence/arousal mapping.

* Input, per member of the head (:class:`LiteEnsemble`): the mean (and, per the config, the standard deviation) over
  3 s patches of one embedding (:func:`pool_embeddings`) — musicnn MSD's 200-d penultimate embedding, musicnn MTT's
  1506-d pooled vector — standardised with the training set's statistics.
* Output: each member's 4 quadrant logits; the members' log-probabilities are averaged. Temperature-scaled (fitted
  on cross-validated outputs), they give calibrated quadrant probabilities.
* Valence/arousal (:func:`valence_arousal`): ``P(valence positive) = P(Q1) + P(Q4)``, ``P(arousal positive) =
  P(Q1) + P(Q2)``; on the 1-9 scale ``5 + scale * confidence * (2 P - 1)``. With ``scale`` 2.5 the values stay in
  [2.5, 7.5] — the span of real song ratings (DEAM: 2.7-6.8) — grade with the evidence instead of saturating,
  and the quadrant read off valence/arousal is always the most probable valence and arousal halves.
  ``confidence`` in [0, 1] shrinks toward the neutral 5 when the input is short or quiet.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn


def pool_embeddings(penultimate: np.ndarray, pooling: str) -> np.ndarray:
    """One clip vector from (P, 200) patch embeddings: ``"mean"`` (200) or ``"mean_std"`` (400)."""
    x = np.asarray(penultimate, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"pool_embeddings: expected (patches, dims) with at least one patch, got {x.shape}")
    if pooling == "mean":
        return x.mean(0).astype(np.float32)
    if pooling == "mean_std":
        return np.concatenate([x.mean(0), x.std(0)]).astype(np.float32)
    raise ValueError(f"unknown pooling {pooling!r} (mean, mean_std)")


class LiteModel(nn.Module):
    """Small MLP (``hidden > 0``) or multinomial-logistic model (``hidden == 0``) over standardised features.

    Parameters
    ----------
    n_features : int
        Length of the pooled embedding.
    hidden : int
        Width of the hidden layer; 0 gives a linear model.
    dropout : float
        Dropout on the input (and the hidden layer): the main regulariser besides weight decay.
    """

    def __init__(self, n_features: int, hidden: int = 0, dropout: float = 0.3):
        super().__init__()
        self.config = {"n_features": int(n_features), "hidden": int(hidden), "dropout": float(dropout)}
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_scale", torch.ones(n_features))
        if hidden > 0:
            self.trunk = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_features, hidden), nn.GELU(),
                                       nn.Dropout(dropout))
            width = hidden
        else:
            self.trunk = nn.Dropout(dropout)
            width = n_features
        self.quadrant_head = nn.Linear(width, 4)

    def set_standardisation(self, features: torch.Tensor) -> None:
        """Store per-feature mean and scale of the training features (constant features get scale 1)."""
        std = features.std(0, unbiased=False)
        self.feature_mean.copy_(features.mean(0))
        self.feature_scale.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        # Clamp standardised values: input far outside the training range must not let one feature dominate.
        z = ((features - self.feature_mean) / self.feature_scale).clamp(-8.0, 8.0)
        return {"quadrant": self.quadrant_head(self.trunk(z))}


# Feature kinds a head member can read: musicnn MSD penultimate (200-d) and MTT pooled (1506-d) patch embeddings.
FEATURE_KINDS = ("msd_penultimate", "mtt_pooled")


class LiteEnsemble(nn.Module):
    """The `lite` head: one :class:`LiteModel` per feature kind, their quadrant log-probabilities averaged (a
    product of experts; one member gives exactly that member's probabilities).

    ``forward`` takes ``{kind: (N, n_features) pooled features}`` and returns ``{"quadrant": (N, 4) averaged
    log-softmax}``, which (temperature-scaled) :func:`quadrant_softmax` turns into probabilities.
    """

    def __init__(self, members: dict[str, dict]):
        super().__init__()
        unknown = sorted(set(members) - set(FEATURE_KINDS))
        if unknown or not members:
            raise ValueError(f"lite head members must be among {FEATURE_KINDS}, got {sorted(members)}")
        self.members = nn.ModuleDict({kind: LiteModel(**cfg) for kind, cfg in members.items()})
        self.config = {"members": {kind: dict(cfg) for kind, cfg in members.items()}}

    @classmethod
    def of(cls, models: dict[str, LiteModel]) -> "LiteEnsemble":
        """An ensemble holding the given trained members (their weights copied)."""
        ensemble = cls({kind: m.config for kind, m in models.items()})
        for kind, m in models.items():
            ensemble.members[kind].load_state_dict(m.state_dict())
        return ensemble

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logp = [torch.log_softmax(m(features[kind])["quadrant"], -1) for kind, m in self.members.items()]
        return {"quadrant": torch.stack(logp).mean(0)}


def quadrant_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def shrink_quadrants(quad_probs: np.ndarray, confidence) -> np.ndarray:
    """Quadrant probabilities pulled toward uniform (0.25 each) by ``1 - confidence``."""
    c = np.asarray(confidence, dtype=np.float64)[..., None]
    return c * np.asarray(quad_probs, dtype=np.float64) + (1.0 - c) * 0.25


def cohere_moods(mood_probs: np.ndarray, quad_probs: np.ndarray, tags=None, full_weight_at: float = 0.5
                 ) -> np.ndarray:
    """Mood probabilities made consistent with the quadrant: a mood on one side of the valence or arousal axis
    (:data:`m2e_plugin.labels.MOOD_SIDES`) keeps its probability while that side is at least ``full_weight_at``
    probable, and is scaled by ``P(side) / full_weight_at`` below that (both factors for a mood on two sides).

    The mood CNN and the quadrant head read the audio separately; alone, 20.7 % of the 600 4Q clips got a mood that
    contradicts their true quadrant (``benchmarks/mood_coherence.py``). ``mood_probs`` (..., len(tags)),
    ``quad_probs`` (..., 4) ordered Q1..Q4 (after confidence shrinkage, so uncertain input is left alone)."""
    from m2e_plugin.labels import MOOD_SIDES, MOOD_TAGS

    tags = list(MOOD_TAGS if tags is None else tags)
    positive, active = axis_probabilities(quad_probs)
    side_probability = {"valence+": positive, "valence-": 1.0 - positive, "arousal+": active, "arousal-": 1.0 - active}
    out = np.array(mood_probs, dtype=np.float64)
    for side, moods in MOOD_SIDES.items():
        weight = np.minimum(1.0, side_probability[side] / float(full_weight_at))
        for mood in moods:
            if mood in tags:
                out[..., tags.index(mood)] *= weight
    return out


def axis_probabilities(quad_probs) -> tuple[np.ndarray, np.ndarray]:
    """(P(valence positive), P(arousal positive)) = (P(Q1) + P(Q4), P(Q1) + P(Q2)) of (..., 4) probabilities."""
    q = np.asarray(quad_probs, dtype=np.float64)
    return q[..., 0] + q[..., 3], q[..., 0] + q[..., 1]


def with_marginals(quad_probs, p_valence: float, p_arousal: float, iterations: int = 50) -> np.ndarray:
    """Quadrant probabilities (Q1..Q4) closest to ``quad_probs`` (iterative proportional fitting: the relative
    odds inside each half are kept) whose P(valence positive) and P(arousal positive) are the given ones: what the
    quadrants say once valence or arousal was moved by other evidence than the head's (quiet input's arousal)."""
    q = np.clip(np.asarray(quad_probs, dtype=np.float64), 1e-12, None)
    pv, pa = float(np.clip(p_valence, 0.0, 1.0)), float(np.clip(p_arousal, 0.0, 1.0))
    positive_v, positive_a = np.array([1, 0, 0, 1], bool), np.array([1, 1, 0, 0], bool)
    for _ in range(iterations):
        for side, target in ((positive_a, pa), (positive_v, pv)):
            q = np.where(side, q * target / max(q[side].sum(), 1e-300),
                         q * (1.0 - target) / max(q[~side].sum(), 1e-300))  # a half at 0 stays at 0
    return q / q.sum()


def valence_arousal(quad_probs: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(valence, arousal) on 1-9 from (..., 4) quadrant probabilities ordered Q1..Q4 (already shrunk)."""
    pv, pa = axis_probabilities(quad_probs)
    return 5.0 + scale * (2.0 * pv - 1.0), 5.0 + scale * (2.0 * pa - 1.0)


def save_lite(model: LiteEnsemble, weights_path, card: dict) -> None:
    """Write the weights (safetensors, with the architecture in its metadata) and the model card JSON beside them."""
    from m2e_plugin.safetensors_io import write_safetensors

    weights_path = write_safetensors(weights_path, model.state_dict(), {"config": json.dumps(model.config)})
    weights_path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def load_lite(weights_path, device: str = "cpu") -> tuple[LiteEnsemble, dict]:
    """Load a `lite` head saved by :func:`save_lite`; returns (model in eval mode, model card). A single-head file
    of lite 2.0 (no ``members`` in its config) loads as a one-member (MSD penultimate) ensemble."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path}: lite weights not found")
    with safe_open(str(weights_path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{weights_path}: no 'config' metadata; not a lite checkpoint")
    config = json.loads(meta["config"])
    if "n_moods" in config:
        raise ValueError(f"{weights_path}: a lite version 1 checkpoint (descriptor features); this package runs "
                         f"lite 2 (musicnn embeddings): rebuild it with `m2e train --model lite`")
    state = load_file(str(weights_path), device="cpu")
    if "members" not in config:
        config = {"members": {"msd_penultimate": config}}
        state = {f"members.msd_penultimate.{k}": v for k, v in state.items()}
    model = LiteEnsemble(config["members"])
    model.load_state_dict(state, strict=True)
    card_path = weights_path.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return model.to(device).eval(), card
