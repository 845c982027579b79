"""BTC (Bi-directional Transformer for Chord recognition; Park et al., ISMIR 2019), large vocabulary, as Music2Emo
uses it: loads the published ``btc_model_large_voca.pt`` and turns audio into Harte-labelled chord segments.

The network is re-written here with the checkpoint's parameter names, so the published state dict loads strictly:

* input (108 frames x 144 log-CQT bins) -> ``embedding_proj`` (no bias) + sinusoidal timing signal;
* N bidirectional layers: a causal and an anti-causal self-attention block (pre-norm, bias-free multi-head
  attention, a two-layer kernel-3 convolutional feed-forward with ReLU after both convolutions), concatenated and
  projected back to the hidden size;
* layer norm (``gamma * (x - mean) / (std + 1e-6) + beta``, unbiased std) -> ``output_projection`` -> arg-max over
  170 classes (14 qualities x 12 roots, then X and N).

The checkpoint is a dict ``{"model": state_dict, "mean": float, "std": float}`` (numpy scalars in the published
file); it is read with ``torch.load(weights_only=True)`` and only numpy's scalar/dtype reconstructors allow-listed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from m2e_plugin.harmony.features import BTC_FRAME_SECONDS, BTC_FRAMES_PER_CHUNK, btc_cqt, prepare
from m2e_plugin.harmony.vocabulary import BTC_LABELS, frames_to_segments

# Hyper-parameters of btc_model_large_voca.pt (BTC's run_config.yaml) that the state dict cannot reveal.
BTC_HEADS = 4
BTC_TIMESTEP = BTC_FRAMES_PER_CHUNK

_torch_modules = None


def _modules():
    """Build the torch module classes on first use, so importing m2e_plugin.harmony does not import torch."""
    global _torch_modules
    if _torch_modules is not None:
        return _torch_modules
    import torch
    from torch import nn

    class LayerNorm(nn.Module):
        # BTC's own layer norm: unbiased std and eps added to the std, not the variance.
        def __init__(self, size: int, eps: float = 1e-6):
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(size))
            self.beta = nn.Parameter(torch.zeros(size))
            self.eps = eps

        def forward(self, x):
            mean = x.mean(-1, keepdim=True)
            std = x.std(-1, keepdim=True)
            return self.gamma * (x - mean) / (std + self.eps) + self.beta

    class MultiHeadAttention(nn.Module):
        def __init__(self, hidden: int, key_depth: int, value_depth: int, heads: int, mask):
            super().__init__()
            self.heads = heads
            self.scale = (key_depth // heads) ** -0.5
            self.query_linear = nn.Linear(hidden, key_depth, bias=False)
            self.key_linear = nn.Linear(hidden, key_depth, bias=False)
            self.value_linear = nn.Linear(hidden, value_depth, bias=False)
            self.output_linear = nn.Linear(value_depth, hidden, bias=False)
            self.register_buffer("mask", mask, persistent=False)

        def _split(self, x):
            b, t, d = x.shape
            return x.view(b, t, self.heads, d // self.heads).permute(0, 2, 1, 3)

        def forward(self, x):
            q = self._split(self.query_linear(x)) * self.scale
            k = self._split(self.key_linear(x))
            v = self._split(self.value_linear(x))
            t = x.shape[1]
            logits = q @ k.transpose(-1, -2) + self.mask[:t, :t]
            context = torch.softmax(logits, dim=-1) @ v
            b, h, _, d = context.shape
            return self.output_linear(context.permute(0, 2, 1, 3).reshape(b, t, h * d))

    class Conv(nn.Module):
        # Kernel-3 convolution over time, zero-padded one frame on each side.
        def __init__(self, n_in: int, n_out: int):
            super().__init__()
            self.conv = nn.Conv1d(n_in, n_out, kernel_size=3)

        def forward(self, x):
            return self.conv(nn.functional.pad(x.transpose(1, 2), (1, 1))).transpose(1, 2)

    class ConvFeedForward(nn.Module):
        def __init__(self, hidden: int, filter_size: int, dropout: float):
            super().__init__()
            self.layers = nn.ModuleList([Conv(hidden, filter_size), Conv(filter_size, hidden)])
            self.dropout = nn.Dropout(dropout)

        def forward(self, x):
            for layer in self.layers:  # ReLU after both convolutions, as in BTC
                x = self.dropout(torch.relu(layer(x)))
            return x

    class AttentionBlock(nn.Module):
        def __init__(self, hidden, key_depth, value_depth, filter_size, heads, mask, dropout):
            super().__init__()
            self.multi_head_attention = MultiHeadAttention(hidden, key_depth, value_depth, heads, mask)
            self.positionwise_convolution = ConvFeedForward(hidden, filter_size, dropout)
            self.dropout = nn.Dropout(dropout)
            self.layer_norm_mha = LayerNorm(hidden)
            self.layer_norm_ffn = LayerNorm(hidden)

        def forward(self, x):
            x = self.dropout(x + self.multi_head_attention(self.layer_norm_mha(x)))
            return self.dropout(x + self.positionwise_convolution(self.layer_norm_ffn(x)))

    class BidirectionalLayer(nn.Module):
        def __init__(self, hidden, key_depth, value_depth, filter_size, heads, timestep, dropout):
            super().__init__()
            # Forward block attends to frames j <= i, the backward block to frames j >= i.
            causal = torch.triu(torch.full((timestep, timestep), float("-inf")), diagonal=1)
            self.attn_block = AttentionBlock(hidden, key_depth, value_depth, filter_size, heads, causal, dropout)
            self.backward_attn_block = AttentionBlock(hidden, key_depth, value_depth, filter_size, heads,
                                                      causal.T.contiguous(), dropout)
            self.linear = nn.Linear(2 * hidden, hidden)

        def forward(self, x):
            return self.linear(torch.cat([self.attn_block(x), self.backward_attn_block(x)], dim=-1))

    class Encoder(nn.Module):
        def __init__(self, feature_size, hidden, layers, heads, key_depth, value_depth, filter_size, timestep,
                     dropout):
            super().__init__()
            self.register_buffer("timing_signal", timing_signal(timestep, hidden), persistent=False)
            self.embedding_proj = nn.Linear(feature_size, hidden, bias=False)
            self.self_attn_layers = nn.ModuleList([
                BidirectionalLayer(hidden, key_depth, value_depth, filter_size, heads, timestep, dropout)
                for _ in range(layers)])
            self.layer_norm = LayerNorm(hidden)
            self.input_dropout = nn.Dropout(dropout)

        def forward(self, x):
            x = self.embedding_proj(self.input_dropout(x)) + self.timing_signal[: x.shape[1]]
            for layer in self.self_attn_layers:
                x = layer(x)
            return self.layer_norm(x)

    class OutputLayer(nn.Module):
        def __init__(self, hidden: int, n_classes: int):
            super().__init__()
            self.output_projection = nn.Linear(hidden, n_classes)
            # Present in the published checkpoint but unused at inference; kept so the state dict loads strictly.
            self.lstm = nn.LSTM(hidden, hidden // 2, batch_first=True, bidirectional=True)

        def forward(self, x):
            return self.output_projection(x)

    class BTCModel(nn.Module):
        """BTC network; ``forward(features (B, T<=timestep, F)) -> logits (B, T, classes)``."""

        def __init__(self, feature_size=144, hidden=128, layers=8, heads=BTC_HEADS, key_depth=128,
                     value_depth=128, filter_size=128, n_classes=170, timestep=BTC_TIMESTEP, dropout=0.2):
            super().__init__()
            self.timestep = timestep
            self.self_attn_layers = Encoder(feature_size, hidden, layers, heads, key_depth, value_depth,
                                            filter_size, timestep, dropout)
            self.output_layer = OutputLayer(hidden, n_classes)

        def forward(self, x):
            return self.output_layer(self.self_attn_layers(x))

    _torch_modules = {"BTCModel": BTCModel}
    return _torch_modules


def timing_signal(length: int, channels: int, min_timescale: float = 1.0, max_timescale: float = 1.0e4):
    """tensor2tensor sinusoids, ``(length, channels)``: sines in the first half of the channels, cosines after."""
    import torch

    half = channels // 2
    increment = math.log(max_timescale / min_timescale) / max(half - 1, 1)
    inv = min_timescale * np.exp(np.arange(half) * -increment)
    scaled = np.arange(length)[:, None] * inv[None, :]
    signal = np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1)
    signal = np.pad(signal, [(0, 0), (0, channels % 2)])
    return torch.from_numpy(signal).float()


def build_btc(**config):
    """A BTC network with random weights (sizes as keyword arguments; defaults = the published large-vocab model)."""
    return _modules()["BTCModel"](**config)


def _config_from_state_dict(state: dict) -> dict:
    """Network sizes read off the state dict's shapes (the published file stores no hyper-parameters)."""
    prefix = "self_attn_layers.self_attn_layers."
    layers = {int(k[len(prefix):].split(".", 1)[0]) for k in state if k.startswith(prefix)}
    mha = prefix + "0.attn_block.multi_head_attention."
    return {
        "feature_size": int(state["self_attn_layers.embedding_proj.weight"].shape[1]),
        "hidden": int(state["self_attn_layers.embedding_proj.weight"].shape[0]),
        "layers": len(layers),
        "key_depth": int(state[mha + "query_linear.weight"].shape[0]),
        "value_depth": int(state[mha + "value_linear.weight"].shape[0]),
        "filter_size": int(state[prefix + "0.attn_block.positionwise_convolution.layers.0.conv.weight"].shape[0]),
        "n_classes": int(state["output_layer.output_projection.weight"].shape[0]),
    }


def _safe_numpy_globals() -> list:
    """numpy reconstructors the published checkpoint's ``mean``/``std`` scalars need, under both numpy 1 and 2
    module names; nothing else is allowed through the weights-only unpickler."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    allowed = [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [dtypes.Float64DType, dtypes.Float32DType]
    return allowed


class BTCRecognizer:
    """A loaded BTC model: ``recognize(audio, sr) -> [(start_s, end_s, label), ...]``.

    Attributes
    ----------
    model : torch.nn.Module
        The network, in eval mode, on ``device``.
    mean, std : float
        Feature normalisation stored in the checkpoint.
    labels : tuple of str
        Harte label of each output class (``"C:min"``, ``"C:maj"``, ..., ``"X"``, ``"N"``).
    """

    def __init__(self, model, mean: float, std: float, device: str = "cpu", *, batch_windows: int = 32):
        self.model = model.eval()
        self.mean = float(mean)
        self.std = float(std)
        self.device = str(device)
        self.batch_windows = int(batch_windows)
        n_classes = model.output_layer.output_projection.out_features
        self.labels = BTC_LABELS if n_classes == len(BTC_LABELS) else tuple(f"class{i}" for i in range(n_classes))

    def frame_classes(self, features: np.ndarray) -> np.ndarray:
        """Arg-max class per frame of ``(T, 144)`` log-CQT features, computed the reference's way: normalise,
        zero-pad to whole 108-frame windows (always at least one padded frame), classify each window."""
        import torch

        timestep = self.model.timestep
        x = (np.asarray(features, dtype=np.float32) - self.mean) / self.std
        n = x.shape[0]
        pad = timestep - n % timestep
        x = np.pad(x, ((0, pad), (0, 0)))
        windows = torch.from_numpy(x.reshape(-1, timestep, x.shape[1]))
        out = []
        with torch.inference_mode():
            for i in range(0, windows.shape[0], self.batch_windows):
                logits = self.model(windows[i:i + self.batch_windows].to(self.device))
                out.append(logits.argmax(dim=-1).reshape(-1).cpu())
        return torch.cat(out).numpy()[:n]

    def recognize(self, audio: np.ndarray, sr: int) -> list[tuple[float, float, str]]:
        """Chord segments of an audio signal (any rate, mono or multichannel).

        Frames last 10/108 s; consecutive equal classes are merged; the last segment ends after the last real
        frame. Raises :class:`m2e_plugin.audio.AudioError` for empty or non-finite audio.
        """
        features = btc_cqt(prepare(audio, sr))
        classes = self.frame_classes(features)
        times = np.arange(classes.size + 1) * BTC_FRAME_SECONDS
        return frames_to_segments(classes, times, times[-1], self.labels)


def load_btc(path: str | os.PathLike, device: str = "cpu") -> BTCRecognizer:
    """Load a BTC checkpoint in the published ``btc_model_large_voca.pt`` layout.

    Parameters
    ----------
    path : path-like
        The ``.pt`` file: ``{"model": state_dict, "mean": scalar, "std": scalar}``.
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not a loadable BTC checkpoint; the message names the file and the cause.
    """
    p = Path(os.fspath(path)).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{p}: BTC checkpoint not found")
    from m2e_plugin.torch_load import load_weights_only

    try:
        ckpt = load_weights_only(p, allow=_safe_numpy_globals())
    except ValueError as exc:  # pickle errors, truncated zips, disallowed globals
        raise ValueError(f"{p}: not a loadable BTC checkpoint: {exc}") from None
    if not isinstance(ckpt, dict) or not {"model", "mean", "std"} <= set(ckpt):
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{p}: not a BTC checkpoint (btc_model_large_voca.pt): expected a dict with 'model', "
                         f"'mean' and 'std', got {keys}")
    state = ckpt["model"]
    try:
        model = build_btc(**_config_from_state_dict(state))
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, IndexError) as exc:
        raise ValueError(f"{p}: state dict does not match the BTC layout ({str(exc).splitlines()[0]})") from None
    std = float(np.asarray(ckpt["std"]))
    if not np.isfinite(std) or std <= 0:
        raise ValueError(f"{p}: feature std must be a positive number, got {ckpt['std']!r}")
    return BTCRecognizer(model.to(device), float(np.asarray(ckpt["mean"])), std, device)
