"""Run a jitted function over a `Batch` in fixed-size chunks (one compile per chunk size).

The last chunk is padded by repeating its first row; padded rows are dropped afterwards.
A batch smaller than the chunk runs as one chunk of the next power of two, at least
`MIN_CHUNK` rows, so batches of 36, 30 and 20 subjects (a small cohort's validation and
test splits, an evaluation's modality-removal rows) share one compile: a compile of the
MC-dropout pass costs seconds, 64 padded rows of it milliseconds.

`compile_ahead` compiles that program on a background thread before the batch is needed
(while training runs), so the later `map_batched` finds it in jit's cache
(hamnet_jax/platform/background_compile.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from hamnet_jax.platform.background_compile import Compiling
from hamnet_jax.data.batch import Batch

MIN_CHUNK = 64


def chunk_size(n: int, size: int) -> int:
    """The chunk `map_batched` runs `n` rows in, for a requested `size`."""
    return max(1, min(size, max(MIN_CHUNK, 1 << max(n - 1, 0).bit_length())))


def chunk_rows(n: int, size: int) -> list[np.ndarray]:
    """The row indices of each chunk of `size` (the last one padded with its first row)."""
    out = []
    for start in range(0, n, size):
        idx = np.arange(start, min(start + size, n))
        out.append(np.concatenate([idx, np.full(size - idx.size, idx[0])]))
    return out


def chunks(batch: Batch, size: int):
    n = batch.size
    for idx in chunk_rows(n, size):
        yield batch.take(idx), min(size, n - int(idx[0]))


def map_batched(fn: Callable[[Batch], dict], batch: Batch, size: int) -> dict[str, np.ndarray]:
    """Concatenate `fn(chunk)` (a dict of [chunk, ...] arrays) over the whole batch."""
    size = chunk_size(batch.size, size)
    parts: list[dict[str, Any]] = []
    for chunk, real in chunks(batch, size):
        out = jax.device_get(fn(chunk))
        parts.append({k: np.asarray(v)[:real] for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def compile_ahead(lower: Callable[[Batch], Any], batch: Batch, size: int, what: str = "batched") -> Compiling:
    """Compile, on a background thread, the program `map_batched(fn, batch, size)` will run:
    `lower(chunk)` is `fn`'s jitted function lowered at a chunk (the first one, read here).
    Wait for the result before that `map_batched`. Measured in `hamnet train --tier
    standard` on this 2-core CPU: the validation forward compiles in ~4 s, the MC-dropout
    programs in ~5 s, beside the train step's compile."""
    chunk = next(chunks(batch, chunk_size(batch.size, size)))[0]
    return Compiling(lambda: lower(chunk), what)
