"""Convert the MSD_musicnn and MTT_musicnn TF1 checkpoints of the ``musicnn`` 0.1.0 wheel into the package's
safetensors (once).

    pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn
    python -m m2e_plugin.backbones.convert_musicnn /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl
    python -m m2e_plugin.backbones.convert_musicnn /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl --checkpoint MTT_musicnn

Reads the checkpoint straight from the wheel with :mod:`m2e_plugin.backbones.tf_checkpoint` (no TensorFlow), keeps
the network's variables only (the Adam slots that make up two thirds of the ``.data`` file are dropped), maps them
onto :class:`m2e_plugin.backbones.musicnn.MusiCNN` and writes ``models/weights/musicnn_{msd,mtt}.safetensors`` with the
wheel's sha256 in the file's metadata. musicnn is ISC-licensed (Jordi Pons, Xavier Serra).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

CHECKPOINT = "MSD_musicnn"
WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"


def tf_to_torch_names() -> dict[str, tuple[str, str]]:
    """torch parameter name -> (TF variable name, layout) for :class:`MusiCNN`, in the wheel graph's creation
    order: conv2d = timbral 7x38, conv2d_1 = timbral 7x67, conv2d_2..4 = temporal 128/64/32, conv2d_5..7 =
    mid-end; batch_normalization = input, _1.._5 = front end, _6.._8 = mid-end, _9 = pooled, _10 = dense."""
    names: dict[str, tuple[str, str]] = {}

    def bn(torch_prefix: str, tf_index: int) -> None:
        tf = "batch_normalization" + (f"_{tf_index}" if tf_index else "")
        for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                             ("running_var", "moving_variance")):
            names[f"{torch_prefix}.{ours}"] = (f"{tf}/{theirs}", "vector")

    def conv(torch_prefix: str, tf_index: int, layout: str) -> None:
        tf = "conv2d" + (f"_{tf_index}" if tf_index else "")
        names[f"{torch_prefix}.weight"] = (f"{tf}/kernel", layout)
        names[f"{torch_prefix}.bias"] = (f"{tf}/bias", "vector")

    bn("input_bn", 0)
    for i in range(2):
        conv(f"timbral.{i}", i, "conv2d")
    for i in range(3):
        conv(f"temporal.{i}", 2 + i, "conv2d")
    for i in range(5):
        bn(f"front_bn.{i}", 1 + i)
    for i in range(3):
        conv(f"mid_conv.{i}", 5 + i, "conv1d")
        bn(f"mid_bn.{i}", 6 + i)
    bn("pool_bn", 9)
    bn("dense_bn", 10)
    for ours, tf in (("dense", "dense"), ("out", "dense_1")):
        names[f"{ours}.weight"] = (f"{tf}/kernel", "dense")
        names[f"{ours}.bias"] = (f"{tf}/bias", "vector")
    return names


def _to_torch(value: np.ndarray, layout: str) -> torch.Tensor:
    if layout == "conv2d":  # TF (kh, kw, in, out) -> torch (out, in, kh, kw)
        value = value.transpose(3, 2, 0, 1)
    elif layout == "conv1d":  # TF conv2d over (T, C, 1): (7, C, 1, out) -> torch conv1d (out, C, 7)
        value = value[:, :, 0, :].transpose(2, 1, 0)
    elif layout == "dense":  # TF (in, out) -> torch (out, in)
        value = value.T
    return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wheel_state(wheel: Path, checkpoint: str, mapping: dict[str, tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Torch tensors of the variables ``mapping`` names (torch name -> (TF variable, layout)) read from
    ``musicnn/<checkpoint>/`` inside the musicnn wheel, without TensorFlow."""
    from m2e_plugin.backbones.tf_checkpoint import read_checkpoint

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        members = [f"musicnn/{checkpoint}/.index", f"musicnn/{checkpoint}/.data-00000-of-00001"]
        missing = [m for m in members if m not in zf.namelist()]
        if missing:
            raise ValueError(f"{wheel}: no {', '.join(missing)} inside; is this the musicnn 0.1.0 wheel?")
        for m in members:
            zf.extract(m, tmp)
        tensors = read_checkpoint(f"{tmp}/musicnn/{checkpoint}/", sorted({v[0] for v in mapping.values()}))
    return {name: _to_torch(tensors[tf], layout) for name, (tf, layout) in mapping.items()}


def load_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], mapping: dict[str, tuple[str, str]],
                 source) -> dict[str, torch.Tensor]:
    """Load ``state`` into ``model`` strictly, every shape checked against the network (errors name ``source``
    and the TF variable); returns the complete state dict."""
    state = dict(state)
    for name, value in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = value  # a PyTorch counter with no TF counterpart; unused in eval mode
        elif state[name].shape != value.shape:
            raise ValueError(f"{source}: {mapping[name][0]} has shape {tuple(state[name].shape)}, "
                             f"the network expects {tuple(value.shape)}")
    model.load_state_dict(state, strict=True)
    return state


def convert(wheel, out, checkpoint: str = CHECKPOINT) -> dict:
    """Write the converted weights of ``checkpoint`` from ``wheel`` to ``out``; returns the provenance record."""
    from m2e_plugin.backbones.musicnn import MusiCNN
    from m2e_plugin.safetensors_io import write_safetensors

    wheel = Path(wheel)
    if not wheel.is_file():
        raise FileNotFoundError(f"{wheel}: musicnn wheel not found (pip download --no-deps musicnn==0.1.0)")
    mapping = tf_to_torch_names()
    state = wheel_state(wheel, checkpoint, mapping)
    state = load_checked(MusiCNN(n_tags=state["out.weight"].shape[0]), state, mapping, wheel)
    record = {"source": f"PyPI musicnn 0.1.0 wheel ({WHEEL_NAME}), checkpoint musicnn/{checkpoint}",
              "wheel_sha256": sha256_of(wheel), "licence": "ISC (musicnn, Jordi Pons and Xavier Serra)",
              "parameters": int(sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))),
              "converter": f"python -m m2e_plugin.backbones.convert_musicnn WHEEL --checkpoint {checkpoint}"}
    out = write_safetensors(out, state, {k: str(v) for k, v in record.items()})
    record["sha256"] = sha256_of(out)
    return record


def main(argv=None) -> int:
    from m2e_plugin.backbones.musicnn import WEIGHTS_FILES, default_weights

    p = argparse.ArgumentParser(prog="python -m m2e_plugin.backbones.convert_musicnn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("wheel", help="path of musicnn-0.1.0-py3-none-any.whl")
    p.add_argument("--checkpoint", default=CHECKPOINT, choices=list(WEIGHTS_FILES),
                   help=f"which of the wheel's musicnn checkpoints (default {CHECKPOINT}; lite also ships MTT_musicnn)")
    p.add_argument("-o", "--output", default=None,
                   help="output .safetensors (default: the package's weights file of that checkpoint)")
    args = p.parse_args(argv)
    try:
        record = convert(args.wheel, args.output or default_weights(args.checkpoint), args.checkpoint)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"convert_musicnn: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
