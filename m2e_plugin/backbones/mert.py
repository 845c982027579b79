"""MERT (m-a-p/MERT-v1-*) as a stock transformers ``HubertModel``, and Music2Emo's MERT embedding.

MERT's own modelling code (``trust_remote_code``) subclasses ``HubertModel``; with the published v1 settings
(``feature_extractor_cqt=false``, ``deepnorm=false``) it is exactly a stock Hubert at inference, with the same
state-dict names. So we build a :class:`transformers.HubertConfig` from the fields of MERT's ``config.json`` and
load the weights into a plain ``HubertModel``: no remote code runs, and the weights load with
``torch.load(weights_only=True)`` or safetensors.

Music2Emo's embedding (reference implementation, ``music2emo.py``): mono audio at 24 kHz, cut into 30 s
non-overlapping segments (the trailing partial segment is kept), each segment through MERT with raw waveform input
(``do_normalize=false``), time-mean of every hidden state, hidden states 6 and 7 (1-based transformer layers)
concatenated to 1536 values, averaged over segments with equal weight.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

MERT_SAMPLE_RATE = 24000
SEGMENT_SECONDS = 30.0
# hidden_states indices (0 = conv/projection output, i = transformer layer i) that Music2Emo concatenates.
MUSIC2EMO_LAYERS = (6, 7)
# Receptive field of the MERT/HuBERT conv stack (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2): 400 samples give
# exactly one frame. Shorter segments are zero-padded to this length instead of crashing (reference bug).
MIN_SAMPLES = 400

# MERT config fields that a stock HubertModel cannot represent; loading refuses them instead of silently
# computing something else.
_UNSUPPORTED = {"feature_extractor_cqt": True, "deepnorm": True}


class MertLoadError(RuntimeError):
    """A MERT directory or hub id that cannot be turned into a HubertModel (names the source and the cause)."""


def hubert_config_from_mert(config: dict, source: str = "<config>"):
    """Build a :class:`transformers.HubertConfig` from the fields of a MERT ``config.json``.

    Parameters
    ----------
    config : dict
        Parsed MERT ``config.json`` (``model_type`` ``"mert_model"``; plain ``"hubert"`` configs work too).
    source : str
        Where the config came from, for error messages.
    """
    import inspect

    from transformers import HubertConfig

    model_type = config.get("model_type")
    if model_type not in ("mert_model", "hubert"):
        raise MertLoadError(f"{source}: config.json has model_type {model_type!r}, expected 'mert_model' (MERT)")
    for field, bad in _UNSUPPORTED.items():
        if bool(config.get(field, False)) == bad:
            raise MertLoadError(f"{source}: MERT option {field}={bad} has no stock-Hubert equivalent "
                                "(only the published v1 settings, where it is false, are supported)")
    params = inspect.signature(HubertConfig.__init__).parameters
    accepted = {k: v for k, v in config.items() if k in params and k not in ("self", "architectures",
                                                                              "transformers_version")}
    # MERT-v1 configs store conv lists as lists; HubertConfig takes lists or tuples.
    hcfg = HubertConfig(**accepted)
    # Inference never masks time steps; keep masked_spec_embed in the state dict though (mask_time_prob > 0).
    hcfg.apply_spec_augment = bool(config.get("apply_spec_augment", True))
    return hcfg


def _read_state_dict(directory: Path) -> dict:
    st = directory / "model.safetensors"
    pt = directory / "pytorch_model.bin"
    if st.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(st), device="cpu")
        except Exception as exc:  # safetensors' own message ("invalid header length") names no file
            raise MertLoadError(f"{st}: not a readable safetensors file ({exc})") from None
    if pt.is_file():
        from m2e_plugin.torch_load import load_weights_only

        try:
            return load_weights_only(pt)
        except ValueError as exc:  # refuses pickled objects other than tensors/containers
            raise MertLoadError(f"{pt}: cannot load with torch.load(weights_only=True): {exc}") from None
    raise MertLoadError(f"{directory}: no model.safetensors or pytorch_model.bin (MERT weights) in this directory")


def _strip_prefix(state: dict, model_keys: set) -> dict:
    """Accept checkpoints saved from a wrapper (``hubert.``/``mert.``/``model.`` prefixes)."""
    if set(state) & model_keys:
        return state
    for prefix in ("hubert.", "mert.", "model."):
        if all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_mert(name_or_dir: str | os.PathLike = "m-a-p/MERT-v1-95M", *, device: str = "cpu", local_files_only=None,
              last_layer: int | None = None):
    """Load MERT as a stock ``HubertModel`` in eval mode.

    Parameters
    ----------
    name_or_dir : str or path
        A local directory holding MERT's ``config.json`` and ``model.safetensors`` or ``pytorch_model.bin``, or a
        Hugging Face id (``"m-a-p/MERT-v1-95M"``, ``"m-a-p/MERT-v1-330M"``) resolved through
        :func:`m2e_plugin.hub.fetch_mert` (standard cache, ``HF_HUB_OFFLINE`` honoured).
    device : str
        Torch device for the returned model.
    local_files_only : bool, optional
        Hub ids only: never touch the network (default: follow ``HF_HUB_OFFLINE``).
    last_layer : int, optional
        Build only transformer layers ``1..last_layer`` (Music2Emo needs hidden states up to 7 of 12: layers
        8-12 are neither loaded nor run). ``hidden_states[0..last_layer]`` are identical to the full model's, since
        MERT-v1 (``do_stable_layer_norm=false``) applies no norm after its last layer. ``None`` keeps them all.

    Returns
    -------
    transformers.HubertModel
        With ``config.output_hidden_states`` left off; call it with ``output_hidden_states=True``.
    """
    import torch
    from transformers import HubertModel

    path = Path(os.fspath(name_or_dir)).expanduser()
    if not path.is_dir():
        if path.exists():
            raise MertLoadError(f"{path}: expected a MERT directory (config.json + weights), got a file")
        from m2e_plugin.hub import HUB_ID, fetch_mert

        if not HUB_ID.match(str(name_or_dir)):
            raise MertLoadError(f"{path}: directory not found (give a MERT directory or a hub id like "
                                "'m-a-p/MERT-v1-95M')")
        path = fetch_mert(str(name_or_dir), local_files_only=local_files_only)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise MertLoadError(f"{path}: no config.json (a MERT directory needs config.json and the weights)")
    try:
        config = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MertLoadError(f"{cfg_file}: not valid JSON: {exc}") from exc
    hcfg = hubert_config_from_mert(config, str(cfg_file))
    if last_layer is not None:
        if not 1 <= int(last_layer) <= hcfg.num_hidden_layers:
            raise MertLoadError(f"{path}: last_layer must be 1..{hcfg.num_hidden_layers}, got {last_layer}")
        if not hcfg.do_stable_layer_norm:  # (the stable variant norms the last layer's output: keep every layer)
            hcfg.num_hidden_layers = int(last_layer)
    # transformers' default attention (SDPA where available): no T x T probability matrix kept per head, which
    # matters for 30 s segments (2249 frames).
    model = HubertModel(hcfg)
    state = _strip_prefix(_read_state_dict(path), set(model.state_dict()))
    # Old checkpoints store the positional conv's weight norm as weight_g/weight_v; torch's weight-norm
    # parametrization converts them in its load_state_dict pre-hook.
    # strict=False: the weights of layers a truncated model does not build are left out on purpose.
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k != "masked_spec_embed"]
    if missing:
        raise MertLoadError(f"{path}: weights lack {len(missing)} MERT/Hubert tensors, e.g. {missing[:3]}")
    from m2e_plugin.torch_load import nonfinite_tensors

    broken = nonfinite_tensors(model.state_dict())  # < 1 s for MERT-95M; every file failed alone before
    if broken:
        raise MertLoadError(f"{path}: {len(broken)} MERT tensor(s) hold NaN or infinite values, e.g. {broken[:3]}; "
                            "the weights are damaged (download them again)")
    model.eval()
    model.requires_grad_(False)
    model.m2e_source = str(name_or_dir)
    return model.to(torch.device(device))


def _device_of(model):
    return next(model.parameters()).device


def pad_segment(segment: np.ndarray, min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """Zero-pad a segment shorter than MERT's receptive field (the reference crashes on those)."""
    x = np.asarray(segment, dtype=np.float32)
    if x.size >= min_samples:
        return x
    return np.pad(x, (0, min_samples - x.size))


def mert_hidden_means(mert, segments: Sequence[np.ndarray]) -> np.ndarray:
    """Time-mean of every hidden state for a batch of equal-length 24 kHz segments.

    Returns
    -------
    np.ndarray
        Shape ``(len(segments), num_hidden_layers + 1, hidden_size)``, float32; index 0 is the conv/projection
        output, index ``i`` the output of transformer layer ``i``.
    """
    import torch

    padded = [pad_segment(s) for s in segments]
    if len({s.size for s in padded}) != 1:
        raise ValueError("mert_hidden_means batches need equal-length segments")
    x = torch.from_numpy(np.stack(padded)).to(_device_of(mert))
    with torch.inference_mode():
        out = mert(x, output_hidden_states=True)
        # Mean per hidden state (B, H) before stacking: never holds a (B, L+1, T, H) copy.
        return torch.stack([h.mean(dim=1) for h in out.hidden_states], dim=1).float().cpu().numpy()


def segment_embedding(mert, segment: np.ndarray, layers: Sequence[int] = MUSIC2EMO_LAYERS) -> np.ndarray:
    """Music2Emo embedding of one segment: time-means of ``hidden_states[l]`` for ``l`` in ``layers``, concatenated."""
    means = mert_hidden_means(mert, [segment])[0]
    return np.concatenate([means[i] for i in layers]).astype(np.float32)


def split_segments(audio: np.ndarray, sr: int = MERT_SAMPLE_RATE,
                   segment_seconds: float = SEGMENT_SECONDS) -> list[np.ndarray]:
    """Non-overlapping segments; the trailing partial segment is kept (reference behaviour since 2025-04-08)."""
    step = int(round(segment_seconds * sr))
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size <= step:
        return [audio]
    return [audio[i : i + step] for i in range(0, audio.size, step)]


def segment_embeddings(mert, blocks: Iterable[np.ndarray],
                       layers: Sequence[int] = MUSIC2EMO_LAYERS) -> Iterator[np.ndarray]:
    """Music2Emo per-segment embeddings from streamed 24 kHz blocks (each block is one segment).

    This is what the ``music2emo`` backend uses: :func:`m2e_plugin.audio.stream_audio` with
    ``block_seconds=30`` yields exactly the reference's 30 s segments, so hours of audio never sit in memory.
    """
    for block in blocks:
        if np.asarray(block).size == 0:
            continue
        yield segment_embedding(mert, block, layers)


def music2emo_embedding(mert, audio: np.ndarray, sr: int, *, layers: Sequence[int] = MUSIC2EMO_LAYERS) -> np.ndarray:
    """Music2Emo's track embedding: shape ``(1536,)`` for MERT-v1-95M (``2 * hidden_size`` in general).

    Parameters
    ----------
    mert : transformers.HubertModel
        From :func:`load_mert`.
    audio : np.ndarray
        Mono (or multichannel, averaged) samples.
    sr : int
        Sample rate of ``audio``; resampled to 24 kHz.
    """
    from m2e_plugin.audio import load_audio

    x, _ = load_audio((np.asarray(audio), int(sr)), target_sr=MERT_SAMPLE_RATE)
    embeddings = list(segment_embeddings(mert, split_segments(x), layers))
    return np.mean(np.stack(embeddings), axis=0).astype(np.float32)
