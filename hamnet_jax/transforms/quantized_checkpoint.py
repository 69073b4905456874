"""A compact on-disk format for quantized params: one `.npz`, written atomically.

Integer codes are stored as int8, or packed two per byte when a layer has 4 bits or
fewer; scales and float leaves as float32; a JSON manifest records every leaf's path,
bits and shape so loading rebuilds the exact trees. The file's size is what
`compression_ratio` figures are measured on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hamnet_jax.io_atomic import write_atomic
from hamnet_jax.transforms.select import path_str

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
    return {path_str(p): np.asarray(leaf) for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _nest(flat: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        *parents, name = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value
    return out


def save_quantized(path: str | Path, qparams: Any, scales: Any, bits: Any) -> int:
    """Write (codes, scales, bits) to `path`; returns the file size in bytes."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    manifest: dict[str, Any] = {"format": FORMAT, "params": {}, "scales": sorted(_flat(scales))}
    flat_bits = {path_str(p): int(b) for p, b in jax.tree_util.tree_leaves_with_path(bits)}
    for name, value in _flat(qparams).items():
        b = flat_bits.get(name, 0)
        entry = {"bits": b, "shape": list(value.shape), "dtype": str(value.dtype)}
        arrays[f"p:{name}"] = pack_nibbles(value) if 0 < b <= 4 else value
        manifest["params"][name] = entry
    for name, value in _flat(scales).items():
        arrays[f"s:{name}"] = value.astype(np.float32)
    arrays["__manifest__"] = np.frombuffer(json.dumps(manifest).encode(), np.uint8)
    return _write_npz(path, arrays)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> int:
    write_atomic(path, lambda f: np.savez(f, **arrays), mode="wb")
    return path.stat().st_size


def load_quantized(path: str | Path) -> tuple[dict, dict, dict]:
    """(codes, scales, bits) trees back from `save_quantized`'s file."""
    path = Path(path)
    with np.load(path) as data:
        if "__manifest__" not in data:
            raise ValueError(f"{path}: not a hamnet-jax quantized checkpoint (no manifest)")
        manifest = json.loads(bytes(data["__manifest__"]).decode())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
        params, bits = {}, {}
        for name, entry in manifest["params"].items():
            raw = data[f"p:{name}"]
            shape = tuple(entry["shape"])
            params[name] = unpack_nibbles(raw, shape) if 0 < entry["bits"] <= 4 else raw.reshape(shape)
            bits[name] = entry["bits"]
        scales = {name: data[f"s:{name}"] for name in manifest["scales"]}
    return _nest(params), _nest(scales), _nest(bits)


def float_checkpoint_bytes(path: str | Path, params: Any) -> int:
    """Size of the same params stored as float32 in the same container (the baseline)."""
    return _write_npz(Path(path), {f"p:{k}": v.astype(np.float32) for k, v in _flat(params).items()})
