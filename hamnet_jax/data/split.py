"""Deterministic train / validation / test split by subject id.

Each subject's split depends only on a hash of (seed, subject id), so it is the same on
every machine, for any row order, and a subject never straddles two splits.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "val", "test")


def split_subjects(subject_ids: np.ndarray, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Indices of each split: {'train': idx, 'val': idx, 'test': idx}."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    u = np.array([
        int.from_bytes(hashlib.blake2b(f"{seed}:{s}".encode(), digest_size=8).digest(), "little") / 2**64
        for s in subject_ids
    ])
    edges = np.cumsum(fractions)
    which = np.searchsorted(edges[:2], u, side="right")
    return {name: np.flatnonzero(which == i) for i, name in enumerate(SPLITS)}
