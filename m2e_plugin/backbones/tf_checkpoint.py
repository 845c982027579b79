"""Read a TensorFlow (1.x/2.x) checkpoint — ``<prefix>.index`` + ``<prefix>.data-00000-of-00001`` — without TensorFlow.

The ``.index`` file is a LevelDB-format table (SSTable): data blocks of prefix-compressed key/value entries, an
index block pointing at them and a 48-byte footer. Each key is a variable name; its value is a ``BundleEntryProto``
(dtype, shape, shard, offset, size) that locates the raw little-endian tensor bytes in the ``.data`` shard. Only
the pieces a tensor bundle uses are implemented: uncompressed blocks, one shard, float/int dtypes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57
_BLOCK_TRAILER = 5  # 1 byte compression type + 4 bytes masked crc32c
# TensorFlow DataType enum -> numpy dtype (the ones a checkpoint of float models holds).
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_, 19: np.float16}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _block_handle(buf: bytes, pos: int) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _block_entries(table: bytes, offset: int, size: int, where: str):
    """(key, value) pairs of one uncompressed table block."""
    if table[offset + size] != 0:
        raise ValueError(f"{where}: compressed SSTable block (type {table[offset + size]}); not supported")
    block = table[offset: offset + size]
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos: pos + unshared]
        pos += unshared
        yield key, block[pos: pos + value_len]
        pos += value_len


def _proto_fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message; length-delimited values are bytes."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos: pos + n], pos + n
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _bundle_entry(value: bytes) -> dict:
    entry = {"dtype": 0, "shape": [], "shard_id": 0, "offset": 0, "size": 0}
    for number, _, v in _proto_fields(value):
        if number == 1:
            entry["dtype"] = v
        elif number == 2:  # TensorShapeProto: repeated Dim dim = 2 { int64 size = 1 }
            for dn, _, dim in _proto_fields(v):
                if dn == 2:
                    entry["shape"].append(next((s for fn, _, s in _proto_fields(dim) if fn == 1), 0))
        elif number == 3:
            entry["shard_id"] = v
        elif number == 4:
            entry["offset"] = v
        elif number == 5:
            entry["size"] = v
        elif number == 7:
            raise ValueError("partitioned (sliced) variables are not supported")
    return entry


def read_index(index_path) -> dict[str, dict]:
    """Variable name -> bundle entry (dtype, shape, shard_id, offset, size) of a checkpoint ``.index`` file."""
    path = Path(index_path)
    table = path.read_bytes()
    if len(table) < 48 or struct.unpack_from("<Q", table, len(table) - 8)[0] != _TABLE_MAGIC:
        raise ValueError(f"{path}: not a TensorFlow checkpoint index (bad SSTable footer)")
    footer = table[-48:]
    _, _, pos = _block_handle(footer, 0)  # metaindex block: unused by tensor bundles
    index_offset, index_size, _ = _block_handle(footer, pos)
    entries = {}
    for _, handle in _block_entries(table, index_offset, index_size, str(path)):
        offset, size, _ = _block_handle(handle, 0)
        for key, value in _block_entries(table, offset, size, str(path)):
            if key:  # the empty key holds the BundleHeaderProto
                entries[key.decode("utf-8")] = _bundle_entry(value)
    return entries


def read_checkpoint(prefix, names=None) -> dict[str, np.ndarray]:
    """Tensors of a single-shard checkpoint ``prefix`` (``prefix + ".index"`` exists); all or only ``names``."""
    prefix = str(prefix)
    entries = read_index(prefix + ".index")
    data_path = Path(prefix + ".data-00000-of-00001")
    if not data_path.is_file():
        raise FileNotFoundError(f"{data_path}: checkpoint data shard not found")
    data = data_path.read_bytes()
    out = {}
    for name in (names if names is not None else sorted(entries)):
        if name not in entries:
            raise KeyError(f"{prefix}: no variable {name!r} in the checkpoint")
        e = entries[name]
        if e["shard_id"] != 0:
            raise ValueError(f"{prefix}: {name} lives in shard {e['shard_id']}; only single-shard checkpoints")
        dtype = _DTYPES.get(e["dtype"])
        if dtype is None:
            raise ValueError(f"{prefix}: {name} has unsupported TensorFlow dtype {e['dtype']}")
        raw = data[e["offset"]: e["offset"] + e["size"]]
        out[name] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(e["shape"]).copy()
    return out
