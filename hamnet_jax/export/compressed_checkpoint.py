"""The on-disk form of pruned and quantized params: one safetensors file, written atomically.

Integer codes are stored as int8 tensors, or packed two per byte (uint8) when a layer has 4
bits or fewer; scales and float leaves as float32 (bfloat16 as its uint16 bits). A leaf
with enough zeros (a pruned layer) is stored as a bitmap of its nonzeros plus their values
whenever that is smaller, so unstructured sparsity saves real bytes on disk. Payloads are
pooled into one flat tensor per storage dtype (hundreds of small leaves would otherwise
cost more in header entries than in data); the manifest in the safetensors metadata
(zlib-compressed JSON) records every leaf's path, bits, shape, layout and segments, so
loading rebuilds the exact trees. The file's size is what `compression_ratio` figures
are measured on. safetensors is the standard container (readable without this package)
and loads without executing code.
"""

from __future__ import annotations

import base64
import json
import tempfile
import zlib
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from hamnet_jax.io_atomic import write_atomic
from hamnet_jax.transforms.select import leaves_by_path

FORMAT = "hamnet-jax-compressed-v3"
SUFFIX = ".safetensors"


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
    if value.dtype == jnp.bfloat16:  # safetensors' numpy API has no bfloat16: its 16 bits as uint16
        return value.view(np.uint16)
    return value.astype(np.float32)


class _Pools:
    """Leaf payloads appended to one flat tensor per storage dtype: a model has hundreds of
    small leaves (biases, norms, scales) whose per-tensor header entries would otherwise cost
    more than their data. The manifest keeps each segment's (pool, offset, count)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {}
        self.sizes: dict[str, int] = {}

    def add(self, array: np.ndarray) -> list:
        key = str(array.dtype)
        flat = np.ascontiguousarray(array).ravel()
        offset = self.sizes.get(key, 0)
        self.parts.setdefault(key, []).append(flat)
        self.sizes[key] = offset + flat.size
        return [key, offset, int(flat.size)]

    def tensors(self) -> dict[str, np.ndarray]:
        return {key: np.concatenate(parts) for key, parts in self.parts.items()}


def _write(path: Path, pools: _Pools, manifest: dict[str, Any]) -> int:
    from safetensors.numpy import save

    if path.suffix != SUFFIX:
        raise ValueError(f"{path}: a compressed checkpoint is a safetensors file; name it *{SUFFIX}")
    packed = base64.b64encode(zlib.compress(json.dumps(manifest, separators=(",", ":")).encode(), 9)).decode()
    data = save(pools.tensors(), metadata={"format": FORMAT, "manifest": packed})
    write_atomic(path, lambda f: f.write(data), mode="wb")
    return path.stat().st_size


def save_compressed(path: str | Path, params: Any, scales: Any | None = None, bits: Any | None = None) -> int:
    """Write params (int8 codes where `bits` > 0, float elsewhere) and their scales to
    `path` (a `.safetensors` file); returns the file size in bytes."""
    pools = _Pools()
    manifest: dict[str, Any] = {"params": {}, "scales": {}}
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
            entry.update(layout="sparse", bitmap=pools.add(bitmap), values=pools.add(sparse_values))
        else:
            entry.update(layout="dense", values=pools.add(dense))
        manifest["params"][name] = entry
    for name, value in _flat({} if scales is None else scales).items():
        manifest["scales"][name] = {"shape": list(value.shape), "values": pools.add(value.astype(np.float32))}
    return _write(Path(path), pools, manifest)


def _read_payload(raw: np.ndarray, bits: int, count: int) -> np.ndarray:
    return unpack_nibbles(raw, (count,)) if 0 < bits <= 4 else raw


def _open(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} checkpoint (format {meta.get('format')!r})")
    return tensors, json.loads(zlib.decompress(base64.b64decode(meta["manifest"])))


def load_compressed(path: str | Path) -> tuple[dict, dict, dict]:
    """(params, scales, bits) trees back from `save_compressed`'s file."""
    tensors, manifest = _open(Path(path))

    def segment(ref: list) -> np.ndarray:
        pool, offset, count = ref
        return tensors[pool][offset:offset + count]

    params, bits = {}, {}
    for name, entry in manifest["params"].items():
        shape, b = tuple(entry["shape"]), entry["bits"]
        count = int(np.prod(shape))
        if entry["layout"] == "sparse":
            nonzero = np.unpackbits(segment(entry["bitmap"]))[:count].astype(bool)
            values = _read_payload(segment(entry["values"]), b, entry["count"])
            full = np.zeros(count, values.dtype)
            full[nonzero] = values
            value = full.reshape(shape)
        else:
            value = _read_payload(segment(entry["values"]), b, count).reshape(shape).copy()
        params[name] = value.view(jnp.bfloat16) if entry["dtype"] == "bfloat16" else value
        bits[name] = b
    scales = {name: segment(e["values"]).reshape(e["shape"]).copy() for name, e in manifest["scales"].items()}
    return _nest(params), _nest(scales), _nest(bits)


def float_checkpoint_bytes(path: str | Path, params: Any) -> int:
    """Size of params stored densely as float32 in the same format (the baseline)."""
    pools = _Pools()
    manifest = {"params": {name: {"bits": 0, "shape": list(v.shape), "dtype": "float32", "count": int(v.size),
                                  "layout": "dense", "values": pools.add(v.astype(np.float32))}
                           for name, v in _flat(params).items()}, "scales": {}}
    return _write(Path(path), pools, manifest)


def float_bytes(params: Any) -> int:
    """Size on disk of dense float32 params in the same container."""
    with tempfile.TemporaryDirectory() as tmp:
        return float_checkpoint_bytes(Path(tmp) / f"dense{SUFFIX}", params)


def compressed_bytes(params: Any, scales: Any | None = None, bits: Any | None = None) -> int:
    """Size on disk of a (quantized) model's compressed checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        return save_compressed(Path(tmp) / f"model{SUFFIX}", params, scales, bits)
