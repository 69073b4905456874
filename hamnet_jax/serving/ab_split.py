"""A/B traffic split between versions of one model.

A request that names no version is assigned an arm: by a hash of one of its parameters
(`key`, e.g. `subject_id`: the same subject always reaches the same version: sticky) or,
when the request lacks that parameter, by a seeded random draw with the weights.
Assignments are counted per arm (`counts`) for monitoring and A/B analysis. The split is
read from `<model>/ab.yaml`:

    weights: {"1": 0.9, "2": 0.1}
    key: subject_id
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any


from hamnet_jax.yaml_text import read_yaml
from hamnet_jax.errors import InputError


class ABSplit:
    def __init__(self, weights: dict[str, float], key: str = "subject_id", seed: int = 0) -> None:
        if not weights or any(float(w) < 0 for w in weights.values()) or sum(map(float, weights.values())) <= 0:
            raise InputError(f"ab split weights: expected non-negative weights with a positive sum, got {weights}")
        bad = [v for v in weights if not str(v).isdigit() or int(v) < 1]
        if bad:
            raise InputError(f"ab split weights: versions must be positive integers, got {bad}")
        total = sum(float(w) for w in weights.values())
        self.arms = sorted((str(v), float(w) / total) for v, w in weights.items())
        self.key = key
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> ABSplit:
        raw = read_yaml(path.read_text()) or {}
        unknown = sorted(set(raw) - {"weights", "key", "seed"})
        if unknown:
            raise InputError(f"{path}: unknown key(s) {unknown}; expected weights, key, seed")
        return cls({str(k): v for k, v in (raw.get("weights") or {}).items()}, raw.get("key", "subject_id"),
                   int(raw.get("seed", 0)))

    def _arm(self, u: float) -> str:
        edge = 0.0
        for version, share in self.arms:
            edge += share
            if u < edge:
                return version
        return self.arms[-1][0]

    def choose(self, parameters: dict[str, Any]) -> str:
        """The version for a request with these parameters (recorded in `counts`)."""
        value = parameters.get(self.key)
        if value is not None:
            digest = hashlib.blake2b(str(value).encode(), digest_size=8).digest()
            version = self._arm(int.from_bytes(digest, "big") / 2**64)
        else:
            with self._lock:
                version = self._arm(self._random.random())
        with self._lock:
            self.counts[version] += 1
        return version
