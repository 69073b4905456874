"""HAMNet's evaluation predictions kept in the run directory, so a second `hamnet evaluate`
of an unchanged run on unchanged data does not run the MC-dropout passes again.

The key is a SHA-256 of everything a prediction depends on: the run's execution path (its
class, model config, every parameter leaf, the preprocessor file, the calibration scale,
MC samples, seed and visit slots) and the evaluated subjects' inputs (feature values,
categories, visit masks and times, subject ids). Retraining, resuming, compressing or
recalibrating a run, or changing a single input cell, changes the key. One file per
evaluated set, `predictions-<set>.npz`, replaced atomically when its key changes.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hamnet_jax.data.arrays import CohortArrays
from hamnet_jax.data.cohort_cache import CachedCohort
from hamnet_jax.io_atomic import write_atomic
from hamnet_jax.runs.run_dir import Run

CACHE_FORMAT = 2  # bump when what a prediction depends on changes


def _update(digest: Any, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype}{array.shape}".encode())
    if array.dtype.kind in "OU":  # subject ids
        digest.update("\x00".join(map(str, array.ravel())).encode())
    else:
        digest.update(array.tobytes())


def run_fingerprint(run: Run) -> str:
    """SHA-256 of what the run's predictions depend on besides the inputs."""
    c = run.config
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{type(run.model).__name__}|{run.model_config!r}|{run.calibration!r}|"
                            f"{c.training.mc_samples}|{c.training.seed}|{c.data.max_visits}|".encode())
    digest.update((run.path / "preprocessor.npz").read_bytes())
    for path, leaf in jax.tree_util.tree_leaves_with_path(run.model.params):
        digest.update(jax.tree_util.keystr(path).encode())
        _update(digest, np.asarray(leaf))
    return digest.hexdigest()


def prediction_key(fingerprint: str, data: CohortArrays | CachedCohort) -> str:
    """SHA-256 of the run's fingerprint and the inputs of `data`'s subjects, read a chunk of
    subjects at a time."""
    digest = hashlib.sha256(fingerprint.encode())
    for chunk in data.chunks():
        for name in sorted(chunk.values):
            digest.update(name.encode())
            _update(digest, chunk.values[name])
        for array in (chunk.categorical, chunk.visit_mask, chunk.visit_times, chunk.subject_ids):
            _update(digest, array)
    return digest.hexdigest()


def cached_predictions(run: Run, fingerprint: str, data: CohortArrays | CachedCohort, name: str,
                       predict: Callable[[], dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], bool]:
    """(`predict()`'s result for the set `name`, whether it came from the run directory)."""
    path = Path(run.path) / f"predictions-{name}.npz"
    key = prediction_key(fingerprint, data)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["__key__"]) == key:
                    return {k: stored[k] for k in stored.files if k != "__key__"}, True
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # unreadable or partial: predict again and replace it
    pred = predict()

    def write(f: io.BufferedWriter) -> None:
        np.savez(f, __key__=np.asarray(key), **pred)

    try:
        write_atomic(path, write, mode="wb")
    except OSError:  # a read-only run directory: the evaluation stands, only the reuse is lost
        pass
    return pred, False
