"""From a file path to split arrays: read, check against the schema, pad, split by subject."""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path
from typing import Protocol, TypeVar

from hamnet_jax.data.arrays import CohortArrays, frame_to_arrays
from hamnet_jax.data.cohort_cache import CachedCohort, build_cohort_cache, default_cache_root, load_cohort_cache
from hamnet_jax.data.schema import Schema
from hamnet_jax.data.split import kfold_split, split_subjects
from hamnet_jax.data.tables import read_table



class DataSettings(Protocol):
    """The `data:` settings this module reads (`config.DataConfig` has them; data sits below
    config in the layers, so it names only these fields)."""

    max_visits: int
    cache: bool
    cache_dir: str | None
    split: tuple[float, float, float]
    split_seed: int
    cv_folds: int
    cv_fold: int

Cohort = TypeVar("Cohort", CohortArrays, CachedCohort)


def load_cohort(path: str | os.PathLike, schema: Schema, data_cfg: DataSettings,
                require_target: bool = True) -> CohortArrays:
    return frame_to_arrays(read_table(path), schema, require_target, data_cfg.max_visits)


def open_cohort(path: str | os.PathLike, schema: Schema, data_cfg: DataSettings,
                require_target: bool = True) -> CohortArrays | CachedCohort:
    """The cohort as `data.cache` says: read in chunks into the shared cohort cache
    (`data.cache_dir`, else `cohorts/` under `$HAMNET_CACHE_DIR` or `~/.cache/hamnet`; reused
    while the file and schema are unchanged, by any run) and read from it by rows, or whole
    into memory."""
    if not data_cfg.cache:
        return load_cohort(path, schema, data_cfg, require_target)
    root = Path(data_cfg.cache_dir) if data_cfg.cache_dir else default_cache_root()
    try:
        directory = build_cohort_cache(path, schema, data_cfg.max_visits, require_target, root)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        # a read-only cache root: the command still runs, from memory
        warnings.warn(f"cohort cache not written ({e.filename or root}: {e.strerror or e}); reading {path} "
                      "into memory", stacklevel=2)
        return load_cohort(path, schema, data_cfg, require_target)
    return load_cohort_cache(directory)


def split_cohort(arrays: Cohort, data_cfg: DataSettings) -> dict[str, Cohort]:
    if data_cfg.cv_folds:
        idx = kfold_split(arrays.subject_ids, data_cfg.cv_folds, data_cfg.cv_fold, data_cfg.split, data_cfg.split_seed)
    else:
        idx = split_subjects(arrays.subject_ids, data_cfg.split, data_cfg.split_seed)
    return {name: arrays.subset(i) for name, i in idx.items()}
