"""Checkpoints are opened with torch.load(weights_only=True); a refusal says what the file is, and never repeats
torch's advice to load with weights_only=False (arbitrary code execution)."""

from __future__ import annotations

import random

import pytest
import torch

from m2e_plugin.torch_load import load_weights_only


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file when unpickled


def test_a_pickle_that_would_run_code_is_refused_and_named(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(str(marker))}, evil)
    with pytest.raises(ValueError, match=r"pickled Python object \(.*open\).*refused") as info:
        load_weights_only(evil)
    assert not marker.exists() and "weights_only` set to `False`" not in str(info.value)


@pytest.mark.parametrize("make", [*(lambda p, seed=seed: p.write_bytes(random.Random(seed).randbytes(4000))
                                    for seed in range(20)),  # random bytes fail in the unpickler in many ways
                                  lambda p: (torch.save({"w": torch.zeros(3)}, p),
                                             p.write_bytes(p.read_bytes()[:100])),
                                  # cut within its first ~64 KB, torch's zip reader says "[Errno 22] Invalid argument"
                                  lambda p: (torch.save({"w": torch.zeros(40000)}, p),
                                             p.write_bytes(p.read_bytes()[:5000]))])
def test_random_or_truncated_bytes_are_not_a_checkpoint(tmp_path, make):
    path = tmp_path / "x.ckpt"
    make(path)
    with pytest.raises(ValueError, match=r"^not a PyTorch checkpoint \(unrecognised or damaged data\)$"):
        load_weights_only(path)


def test_tensors_and_containers_load(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.ones(2), "meta": [1, "a"]}, path)
    loaded = load_weights_only(path)
    assert torch.equal(loaded["w"], torch.ones(2)) and loaded["meta"] == [1, "a"]
