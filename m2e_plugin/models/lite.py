"""The `lite` head: standardised clip descriptors -> Russell quadrant (4-way) + mood tags (multi-label).

Valence and arousal are read off the quadrant distribution, so the three outputs can never disagree:
``P(valence positive) = P(Q1) + P(Q4)``, ``P(arousal positive) = P(Q1) + P(Q2)``, and on the product's 1-9 scale
``valence = 1 + 8 * P(valence positive)`` (likewise arousal). 5 is the undecided midpoint; 9 means the model is sure
the clip is positive (pleasant / energetic), 1 sure it is negative. The quadrant from these values equals the
quadrant whose valence and arousal halves are most probable.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn


class LiteModel(nn.Module):
    """Small MLP (or linear model when ``hidden == 0``) over standardised descriptors.

    Parameters
    ----------
    n_features : int
        Length of the descriptor vector.
    n_moods : int
        Number of mood tags (multi-label outputs).
    hidden : int
        Width of the hidden layer; 0 gives a multinomial-logistic model.
    dropout : float
        Dropout on the input and hidden layer (small data: the main regulariser besides weight decay).
    """

    def __init__(self, n_features: int, n_moods: int, hidden: int = 64, dropout: float = 0.3):
        super().__init__()
        self.config = {"n_features": int(n_features), "n_moods": int(n_moods), "hidden": int(hidden),
                       "dropout": float(dropout)}
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
        self.mood_head = nn.Linear(width, n_moods)

    def set_standardisation(self, features: torch.Tensor) -> None:
        """Store per-feature mean and scale of the training features (constant features get scale 1)."""
        mean = features.mean(0)
        std = features.std(0, unbiased=False)
        self.feature_mean.copy_(mean)
        self.feature_scale.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        # Clamp standardised values: a clip far outside the training range (e.g. digital silence) must not let
        # one feature dominate the logits.
        z = ((features - self.feature_mean) / self.feature_scale).clamp(-8.0, 8.0)
        h = self.trunk(z)
        return {"quadrant": self.quadrant_head(h), "moods": self.mood_head(h)}

    @staticmethod
    def valence_arousal(quadrant_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(valence, arousal) on 1-9 from (..., 4) quadrant probabilities ordered Q1..Q4."""
        pv = quadrant_probs[..., 0] + quadrant_probs[..., 3]
        pa = quadrant_probs[..., 0] + quadrant_probs[..., 1]
        return 1.0 + 8.0 * pv, 1.0 + 8.0 * pa


def save_lite(model: LiteModel, weights_path, card: dict) -> None:
    """Write the weights (safetensors, with the architecture in its metadata) and the model card JSON beside them."""
    from safetensors.torch import save_file

    weights_path = Path(weights_path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights_path), metadata={"config": json.dumps(model.config)})
    weights_path.chmod(0o644)  # safetensors writes 0600; the file ships in the wheel and must be world-readable
    weights_path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def load_lite(weights_path, device: str = "cpu") -> tuple[LiteModel, dict]:
    """Load a `lite` model saved by :func:`save_lite`; returns (model in eval mode, model card)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path}: lite weights not found")
    with safe_open(str(weights_path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{weights_path}: no 'config' metadata; not a lite checkpoint")
    model = LiteModel(**json.loads(meta["config"]))
    model.load_state_dict(load_file(str(weights_path), device="cpu"), strict=True)
    card_path = weights_path.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return model.to(device).eval(), card
