"""Writing safetensors files reproducibly: the same tensors and metadata always give the same bytes (and sha256).

safetensors serialises the metadata from a hash map, so with two keys or more their order in the header, and with
it the file's sha256, changes from one write to the next (0.8, seen). Model cards record the sha256 of the weights
they describe, so every weights file of this package is written here, with the metadata keys sorted.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

_LENGTH_BYTES = 8  # the header's length, little-endian u64, opens the file
_ALIGN = 8  # safetensors pads the header with spaces so that the tensor data starts 8-byte aligned


def write_safetensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` (moved to the CPU, made contiguous) and string ``metadata`` to ``path`` (parents created;
    mode 0644, since weights ship in the wheel and safetensors writes 0600). Returns the path."""
    from safetensors.torch import save

    blob = save({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, metadata=metadata)
    size = int.from_bytes(blob[:_LENGTH_BYTES], "little")
    header = json.loads(blob[_LENGTH_BYTES:_LENGTH_BYTES + size])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % _ALIGN)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(text).to_bytes(_LENGTH_BYTES, "little") + text + blob[_LENGTH_BYTES + size:])
    path.chmod(0o644)
    return path
