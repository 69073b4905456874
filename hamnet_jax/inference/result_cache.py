"""`CachedPredictor`: an LRU cache of per-subject results in front of any `Predictor`.

The key of a subject is a BLAKE2b digest of its row of every (validated, padded) input,
names and shapes included. A subject's result depends on its own row alone (fixed
MC-dropout masks, models/mc_dropout.py), so a request's cached rows are answered without
the model and only the others are run, as one batch. The cache holds at most
`max_entries` subjects (least recently used evicted first); `stats()` reports hits,
misses, evictions, size and hit rate. Thread-safe: a server's handlers share one.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from hamnet_jax.errors import InputError
from hamnet_jax.inference.predictors import Predictor


def row_keys(arrays: Mapping[str, np.ndarray]) -> list[bytes]:
    """One digest per subject row over every input (name, row shape, bytes)."""
    n = next(iter(arrays.values())).shape[0]
    hashes = [hashlib.blake2b(digest_size=16) for _ in range(n)]
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        header = f"{name}:{a.dtype.str}:{a.shape[1:]}".encode()
        for i, h in enumerate(hashes):
            h.update(header)
            h.update(a[i].tobytes())
    return [h.digest() for h in hashes]


class CachedPredictor(Predictor):
    def __init__(self, inner: Predictor, max_entries: int = 10_000) -> None:
        if int(max_entries) < 1:
            raise InputError(f"cache max_entries must be >= 1, got {max_entries}")
        self.inner, self.max_entries = inner, int(max_entries)
        self.spec, self.output_names, self.max_batch = inner.spec, inner.output_names, inner.max_batch
        self._entries: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    @property
    def warmup_sizes(self) -> tuple[int, ...]:
        return self.inner.warmup_sizes

    def validate(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return self.inner.validate(arrays)

    def run_validated(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = row_keys(arrays)
        rows: list[dict[str, Any] | None] = []
        with self._lock:
            for k in keys:
                hit = self._entries.get(k)
                if hit is not None:
                    self._entries.move_to_end(k)
                rows.append(hit)
        todo = [i for i, r in enumerate(rows) if r is None]
        if todo:
            index = np.asarray(todo)
            fresh = self.inner.run_validated({k: v[index] for k, v in arrays.items()})  # chunks, buckets
            for j, i in enumerate(todo):
                rows[i] = {name: fresh[name][j] for name in self.output_names}
        with self._lock:
            self.hits += len(keys) - len(todo)
            self.misses += len(todo)
            for i in todo:
                self._entries[keys[i]] = rows[i]
                self._entries.move_to_end(keys[i])
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.evictions += 1
        return {name: np.stack([r[name] for r in rows]) for name in self.output_names}

    def run_batch(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run_validated(arrays)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def stats(self) -> dict[str, float]:
        with self._lock:
            total = self.hits + self.misses
            return {"hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                    "size": len(self._entries), "max_entries": self.max_entries,
                    "hit_rate": self.hits / total if total else 0.0}
