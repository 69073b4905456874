"""Deterministic train / validation / test split by subject id.

Each subject's split depends only on a hash of (seed, subject id), so it is the same on
every machine, for any row order, and a subject never straddles two splits. `kfold_split`
does the same for k-fold cross-validation.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "val", "test")


def _unit_hash(subject_ids: np.ndarray, salt: str) -> np.ndarray:
    """A number in [0, 1) per subject from a hash of (salt, subject id)."""
    return np.array([
        int.from_bytes(hashlib.blake2b(f"{salt}:{s}".encode(), digest_size=8).digest(), "little") / 2**64
        for s in subject_ids
    ])


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")


def split_subjects(subject_ids: np.ndarray, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Indices of each split: {'train': idx, 'val': idx, 'test': idx}."""
    _check_fractions(fractions)
    u = _unit_hash(subject_ids, str(seed))
    edges = np.cumsum(fractions)
    which = np.searchsorted(edges[:2], u, side="right")
    return {name: np.flatnonzero(which == i) for i, name in enumerate(SPLITS)}


def kfold_split(subject_ids: np.ndarray, folds: int, fold: int,
                fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0) -> dict[str, np.ndarray]:
    """Fold `fold` of `folds` as {'train', 'val', 'test'} indices: the subjects whose hash
    falls in the fold's 1/folds of [0, 1) are the test set (so over the folds every subject
    is tested once); the rest split into train and validation in `fractions`' train:val ratio,
    by a second hash (the same for every fold, so a subject's role outside its test fold is stable)."""
    _check_fractions(fractions)
    if folds < 2 or not 0 <= fold < folds:
        raise ValueError(f"fold {fold} of {folds}: expected folds >= 2 and 0 <= fold < folds")
    which = np.minimum((_unit_hash(subject_ids, str(seed)) * folds).astype(int), folds - 1)
    val = _unit_hash(subject_ids, f"val:{seed}") < fractions[1] / (fractions[0] + fractions[1])
    test = which == fold
    return {"train": np.flatnonzero(~test & ~val), "val": np.flatnonzero(~test & val), "test": np.flatnonzero(test)}


def seeded_sample(n: int, most: int, seed: int = 0) -> np.ndarray:
    """Rows 0..n-1 when n <= `most`, else `most` of them drawn without replacement with
    `seed`, in cohort order: the subjects a bounded-memory step (a profile, the baselines)
    reads from a cohort of any size."""
    if n <= most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, most, replace=False))
