"""Music2Emo heads, state-dict compatible with the published checkpoints (``saved_models/J_all.ckpt`` etc.).

Two classes share one trunk (reference doc sections 3.2-3.4):

* :class:`MTAttnCK`, the multitask student used at inference (``FeedforwardModelMTAttnCK``):
  ``forward(x_mert, chord_root, chord_attr, key_mode) -> (mood_logits[B, 56], va[B, 2])``.
* :class:`AttnCK`, the single-task teacher used for knowledge distillation (``FeedforwardModelAttnCK``):
  same trunk, one ``output_proj`` head with 56 (mood) or 2 (VA) outputs.

Trunk: chord root and chord quality embeddings (14 x 4 each) -> concatenated (B, 100, 8) + fixed sinusoidal
position encoding -> a zero CLS vector prepended -> 2-layer post-norm TransformerEncoder (d_model 8, 8 heads,
FFN 64) -> CLS output (8) -> ``[x_mert (1536), cls (8), key_mode (1)]`` -> Linear(1545, 512) + ReLU.

Reference quirks, and what we do (see also ``Music2EmoBackend``):

* The reference inference script always feeds ``key_mode = 0`` (a lookup bug), while training and the paper's
  test metrics used the real mode (0 major / 1 minor). The head takes whatever it is given; the backend's
  ``key_input`` option chooses (default ``"estimated"``: the real mode, as in training; ``"major"`` reproduces the
  reference script's outputs).
* ``minmaj7`` (a BTC class absent from the quality vocabulary) is mapped by
  :func:`m2e_plugin.harmony.encode_music2emo`; the head only sees ids 0-13.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

NUM_MOODS = 56
CHORD_VOCAB = 14  # root ids N, C..B (13 used) and quality ids (14), both embedded with 14 rows
CHORD_EMB = 4
SEQ_LEN = 100
D_MODEL = 2 * CHORD_EMB
MERT_DIM = 1536

# Buffers of the Lightning module that are not part of the head.
_LIGHTNING_EXTRA_PREFIXES = ("loss_fn", "teacher")


def sinusoidal_encoding(length: int, d_model: int) -> torch.Tensor:
    """Fixed position encoding: even dims sin(pos / 10000^(2i/d)), odd dims cos(...), shape (length, d_model)."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class ChordKeyTrunk(nn.Module):
    """Shared encoder of MERT embedding + chord sequence + key mode -> 512-d hidden vector."""

    def __init__(self, input_size: int = MERT_DIM, hidden: int = 512, max_len: int = SEQ_LEN):
        super().__init__()
        self.chord_root_embedding = nn.Embedding(CHORD_VOCAB, CHORD_EMB)
        self.chord_attr_embedding = nn.Embedding(CHORD_VOCAB, CHORD_EMB)
        nn.init.xavier_uniform_(self.chord_root_embedding.weight)
        nn.init.xavier_uniform_(self.chord_attr_embedding.weight)
        # Not persistent: the reference keeps it as a plain attribute, so it is absent from the checkpoints.
        self.register_buffer("positional_encoding", sinusoidal_encoding(max_len, D_MODEL), persistent=False)
        layer = nn.TransformerEncoderLayer(d_model=D_MODEL, nhead=8, dim_feedforward=64, dropout=0.1,
                                           batch_first=True)
        self.chord_transformer = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.input_proj = nn.Sequential(nn.Linear(input_size + D_MODEL + 1, hidden), nn.ReLU())

    def encode(self, x_mert, chord_root, chord_attr, key_mode) -> torch.Tensor:
        chord = torch.cat([self.chord_root_embedding(chord_root), self.chord_attr_embedding(chord_attr)], dim=-1)
        length = chord.shape[1]
        if length > self.positional_encoding.shape[0]:
            raise ValueError(f"chord sequence of {length} tokens exceeds the head's {self.positional_encoding.shape[0]}")
        chord = chord + self.positional_encoding[:length].to(chord.dtype)
        cls = torch.zeros(chord.shape[0], 1, D_MODEL, dtype=chord.dtype, device=chord.device)
        encoded = self.chord_transformer(torch.cat([cls, chord], dim=1))[:, 0]
        key = key_mode.reshape(key_mode.shape[0], -1)[:, :1].to(x_mert.dtype)
        return self.input_proj(torch.cat([x_mert, encoded.to(x_mert.dtype), key], dim=1))


class MTAttnCK(ChordKeyTrunk):
    """Music2Emo multitask head (``FeedforwardModelMTAttnCK``): mood logits (56) and raw 1-9 VA (2)."""

    def __init__(self, input_size: int = MERT_DIM, num_moods: int = NUM_MOODS, num_va: int = 2):
        super().__init__(input_size)
        self.classification_branch = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, num_moods))
        self.regression_branch = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, num_va))

    def forward(self, x_mert, chord_root, chord_attr, key_mode):
        """Return ``(mood_logits[B, 56], va[B, 2])``; va index 0 valence, 1 arousal, raw 1-9 scale."""
        h = self.encode(x_mert, chord_root, chord_attr, key_mode)
        return self.classification_branch(h), self.regression_branch(h)


class AttnCK(ChordKeyTrunk):
    """Music2Emo single-task teacher (``FeedforwardModelAttnCK``); ``output_size`` 56 (moods) or 2 (VA)."""

    def __init__(self, input_size: int = MERT_DIM, output_size: int = NUM_MOODS):
        super().__init__(input_size)
        self.output_proj = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, output_size))

    def forward(self, x_mert, chord_root, chord_attr, key_mode):
        """Return the teacher's raw outputs ``[B, output_size]``."""
        return self.output_proj(self.encode(x_mert, chord_root, chord_attr, key_mode))


class CheckpointError(RuntimeError):
    """A head checkpoint that cannot be loaded (names the file and the cause)."""


def read_head_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Head weights from a Lightning ``.ckpt`` (``state_dict`` with ``model.`` prefix) or our safetensors.

    Lightning checkpoints are read with ``torch.load(weights_only=True)``; loss buffers
    (``loss_fn_classification*``) and any other non-``model.`` entries are dropped.
    """
    p = Path(os.fspath(path)).expanduser()
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except Exception as exc:
            raise CheckpointError(f"{p}: not a readable safetensors file: {exc}") from exc
    from m2e_plugin.torch_load import load_weights_only

    try:
        raw = load_weights_only(p)
    except ValueError as exc:
        raise CheckpointError(f"{p}: cannot load with torch.load(weights_only=True): {exc}") from None
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        state = raw["state_dict"]
    elif isinstance(raw, dict) and all(isinstance(v, torch.Tensor) for v in raw.values()):
        state = raw
    else:
        raise CheckpointError(f"{p}: no 'state_dict' in this checkpoint (expected a Lightning .ckpt)")
    if any(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    return {k: v for k, v in state.items() if not k.startswith(_LIGHTNING_EXTRA_PREFIXES)}


def _load_into(module: nn.Module, state: dict, path) -> nn.Module:
    known = module.state_dict()
    kept = {k: v for k, v in state.items() if k in known}
    missing = sorted(set(known) - set(kept))
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {len(missing)} head tensors, e.g. {missing[:3]} "
                              f"(is it a Music2Emo {type(module).__name__} checkpoint?)")
    bad = [(k, tuple(v.shape), tuple(known[k].shape)) for k, v in kept.items() if v.shape != known[k].shape]
    if bad:
        raise CheckpointError(f"{path}: tensor shapes differ from the Music2Emo head, e.g. {bad[:3]} "
                              "(name, checkpoint shape, expected shape)")
    from m2e_plugin.torch_load import nonfinite_tensors

    broken = nonfinite_tensors(kept)  # they failed every file with "valence nan"
    if broken:
        raise CheckpointError(f"{path}: {len(broken)} tensor(s) hold NaN or infinite values, e.g. {broken[:3]} "
                              "(a damaged or diverged checkpoint)")
    module.load_state_dict(kept, strict=True)
    # Tensors the head has no place for: the file is a variant of the model (extra layers), and its answers would
    # not be that variant's; the backend warns with these names.
    module.ignored_tensors = sorted(set(state) - set(known))
    return module


def load_music2emo_head(path: str | os.PathLike, device: str = "cpu") -> MTAttnCK:
    """Load the multitask head (e.g. ``J_all.ckpt``) in eval mode.

    Parameters
    ----------
    path : str or path
        Lightning ``.ckpt`` as published by Music2Emo, or a ``.safetensors`` with unprefixed names.
    device : str
        Torch device (weights are mapped to CPU first, so GPU checkpoints load anywhere).

    Returns
    -------
    MTAttnCK
        ``forward(x_mert[B,1536] float, chord_root[B,100] long, chord_attr[B,100] long, key_mode[B,1] long)``
        returns ``(mood_logits[B,56], va[B,2])``.
    """
    state = read_head_state(path)
    moods = state.get("classification_branch.2.weight")
    va = state.get("regression_branch.2.weight")
    proj = state.get("input_proj.0.weight")
    if moods is None or va is None or proj is None:
        raise CheckpointError(f"{path}: not a Music2Emo multitask (MTAttnCK) checkpoint: "
                              "classification_branch/regression_branch/input_proj weights missing")
    if moods.shape[0] != NUM_MOODS or va.shape[0] != 2:  # it would load, then fail (or mislead) on every file
        raise CheckpointError(f"{path}: predicts {moods.shape[0]} moods and {va.shape[0]} valence/arousal outputs; "
                              f"a Music2Emo head predicts the {NUM_MOODS} MTG-Jamendo moods and 2 (valence, arousal)")
    head = MTAttnCK(input_size=proj.shape[1] - D_MODEL - 1, num_moods=moods.shape[0], num_va=va.shape[0])
    return _load_into(head, state, path).eval().to(torch.device(device))


def load_attnck(path: str | os.PathLike, device: str = "cpu") -> AttnCK:
    """Load a single-task teacher (``*_best.ckpt``); the output size (56 or 2) is read from the checkpoint."""
    state = read_head_state(path)
    out = state.get("output_proj.2.weight")
    proj = state.get("input_proj.0.weight")
    if out is None or proj is None:
        raise CheckpointError(f"{path}: not a Music2Emo teacher (AttnCK) checkpoint: output_proj weights missing")
    teacher = AttnCK(input_size=proj.shape[1] - D_MODEL - 1, output_size=out.shape[0])
    return _load_into(teacher, state, path).eval().to(torch.device(device))


def save_head(module: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write a head's weights as safetensors (unprefixed names; loadable by the functions above)."""
    from m2e_plugin.safetensors_io import write_safetensors

    write_safetensors(path, module.state_dict(), metadata or {})
