"""Weights files are byte-reproducible: model cards record their sha256, so a rewrite must not change them."""

from __future__ import annotations

import hashlib
import json
import stat

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from m2e_plugin.safetensors_io import write_safetensors


def test_same_tensors_and_metadata_give_the_same_bytes(tmp_path):
    torch.manual_seed(0)
    tensors = {"dense.weight": torch.randn(3, 4), "dense.bias": torch.randn(3), "bn.num_batches_tracked":
               torch.tensor(7)}
    # safetensors alone orders several metadata keys differently from one write to the next
    metadata = {f"key{i}": f"value {i}" for i in range(8)}
    digests = {hashlib.sha256(write_safetensors(tmp_path / f"w{i}.safetensors", tensors, metadata).read_bytes())
               .hexdigest() for i in range(6)}
    assert len(digests) == 1
    path = tmp_path / "w0.safetensors"
    loaded = load_file(str(path))
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata() == metadata
    header_size = int.from_bytes(path.read_bytes()[:8], "little")
    assert header_size % 8 == 0
    assert list(json.loads(path.read_bytes()[8:8 + header_size])["__metadata__"]) == sorted(metadata)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # ships in the wheel: world-readable


def test_without_metadata_and_from_another_device_layout(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    path = write_safetensors(tmp_path / "sub" / "t.safetensors", {"t": base.T})  # not contiguous; folder made
    assert torch.equal(load_file(str(path))["t"], base.T)
