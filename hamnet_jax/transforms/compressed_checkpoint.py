"""A compact on-disk format for pruned and quantized params: one file, written atomically.

Layout: 8 bytes (little-endian length of the manifest), the zlib-compressed JSON manifest, then every
payload back to back (no per-array container overhead, so small layers cost their bytes
only).
Integer codes are stored as int8, or packed two per byte when a layer has 4 bits or
fewer; scales and float leaves as float32. A leaf with enough zeros (a pruned layer) is
stored as a bitmap of its nonzeros plus their values whenever that is smaller, so
unstructured sparsity saves real bytes on disk. A JSON manifest records every leaf's
path, bits, shape and layout so loading rebuilds the exact trees. The file's size is what
`compression_ratio` figures are measured on.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from hamnet_jax.io_atomic import write_atomic
from hamnet_jax.transforms.select import leaves_by_path

FORMAT = "hamnet-jax-quantized-v1"


def pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """int8 codes in [-8, 7] -> uint8, two per byte (low nibble first)."""
    flat = (codes.ravel().astype(np.int16) & 0xF).astype(np.uint8)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return flat[0::2] | (flat[1::2] << 4)


def unpack_nibbles(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    low, high = packed & 0xF, packed >> 4
    flat = np.stack([low, high], axis=1).ravel()[: int(np.prod(shape))].astype(np.int8)
    return np.where(flat > 7, flat - 16, flat).astype(np.int8).reshape(shape)


def _flat(tree: Any) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in leaves_by_path(tree).items()}


def _nest(flat: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        *parents, name = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value
    return out


def _dense_payload(value: np.ndarray, bits: int) -> np.ndarray:
    if 0 < bits <= 4:
        return pack_nibbles(value)
    if bits or value.dtype == np.float16:
        return value
    if value.dtype == jnp.bfloat16:  # npz has no bfloat16: its 16 bits as uint16
        return value.view(np.uint16)
    return value.astype(np.float32)


class _Blob:
    """Payload segments appended back to back; the manifest keeps (offset, nbytes, dtype)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def add(self, array: np.ndarray) -> dict[str, Any]:
        data = np.ascontiguousarray(array).tobytes()
        entry = {"offset": self.offset, "nbytes": len(data), "dtype": str(array.dtype)}
        self.parts.append(data)
        self.offset += len(data)
        return entry


def _write(path: Path, manifest: dict[str, Any], blob: _Blob) -> int:
    header = zlib.compress(json.dumps(manifest).encode(), 9)

    def write(f: Any) -> None:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        for part in blob.parts:
            f.write(part)

    write_atomic(path, write, mode="wb")
    return path.stat().st_size


def save_compressed(path: str | Path, params: Any, scales: Any | None = None, bits: Any | None = None) -> int:
    """Write params (int8 codes where `bits` > 0, float elsewhere) and their scales to
    `path`; returns the file size in bytes."""
    blob = _Blob()
    manifest: dict[str, Any] = {"format": FORMAT, "params": {}, "scales": {}}
    flat_bits = {} if bits is None else {k: int(b) for k, b in leaves_by_path(bits).items()}
    for name, value in _flat(params).items():
        b = flat_bits.get(name, 0)
        dense = _dense_payload(value, b)
        nonzero = value != 0
        sparse_values = _dense_payload(value[nonzero], b)
        bitmap = np.packbits(nonzero.ravel())
        entry: dict[str, Any] = {"bits": b, "shape": list(value.shape), "dtype": str(value.dtype),
                                 "count": int(nonzero.sum())}
        if bitmap.nbytes + sparse_values.nbytes < dense.nbytes:
            entry.update(layout="sparse", bitmap=blob.add(bitmap), values=blob.add(sparse_values))
        else:
            entry.update(layout="dense", values=blob.add(dense))
        manifest["params"][name] = entry
    for name, value in _flat({} if scales is None else scales).items():
        manifest["scales"][name] = {"shape": list(value.shape), "values": blob.add(value.astype(np.float32))}
    return _write(Path(path), manifest, blob)


def _segment(data: bytes, start: int, seg: dict[str, Any]) -> np.ndarray:
    raw = data[start + seg["offset"]: start + seg["offset"] + seg["nbytes"]]
    if len(raw) != seg["nbytes"]:
        raise ValueError("compressed checkpoint is truncated")
    return np.frombuffer(raw, np.dtype(seg["dtype"]))


def _read_payload(raw: np.ndarray, bits: int, count: int) -> np.ndarray:
    return unpack_nibbles(raw, (count,)) if 0 < bits <= 4 else raw


def load_compressed(path: str | Path) -> tuple[dict, dict, dict]:
    """(params, scales, bits) trees back from `save_compressed`'s file."""
    path = Path(path)
    data = path.read_bytes()
    try:
        size = int.from_bytes(data[:8], "little")
        manifest = json.loads(zlib.decompress(data[8:8 + size]).decode())
    except (ValueError, UnicodeDecodeError, zlib.error):
        raise ValueError(f"{path}: not a hamnet-jax compressed checkpoint (no manifest)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} checkpoint")
    start = 8 + size
    params, bits = {}, {}
    for name, entry in manifest["params"].items():
        shape, b = tuple(entry["shape"]), entry["bits"]
        count = int(np.prod(shape))
        if entry["layout"] == "sparse":
            nonzero = np.unpackbits(_segment(data, start, entry["bitmap"]))[:count].astype(bool)
            values = _read_payload(_segment(data, start, entry["values"]), b, entry["count"])
            full = np.zeros(count, values.dtype)
            full[nonzero] = values
            value = full.reshape(shape)
        else:
            value = _read_payload(_segment(data, start, entry["values"]), b, count).reshape(shape).copy()
        params[name] = value.view(jnp.bfloat16) if entry["dtype"] == "bfloat16" else value
        bits[name] = b
    scales = {name: _segment(data, start, e["values"]).reshape(e["shape"]).copy()
              for name, e in manifest["scales"].items()}
    return _nest(params), _nest(scales), _nest(bits)


def float_checkpoint_bytes(path: str | Path, params: Any) -> int:
    """Size of params stored densely as float32 in the same format (the baseline)."""
    blob = _Blob()
    manifest: dict[str, Any] = {"format": FORMAT, "scales": {}, "params": {
        name: {"bits": 0, "shape": list(v.shape), "dtype": "float32", "count": int(v.size), "layout": "dense",
               "values": blob.add(v.astype(np.float32))} for name, v in _flat(params).items()}}
    return _write(Path(path), manifest, blob)
