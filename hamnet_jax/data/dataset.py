"""From a file path to split arrays: read, check against the schema, pad, split by subject."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from hamnet_jax.data.arrays import CohortArrays, frame_to_arrays
from hamnet_jax.data.schema import Schema
from hamnet_jax.data.split import kfold_split, split_subjects
from hamnet_jax.data.tables import read_table

if TYPE_CHECKING:  # type hints only: data sits below config in the layers
    from hamnet_jax.config import DataConfig


def load_cohort(path: str | os.PathLike, schema: Schema, data_cfg: DataConfig,
                require_target: bool = True) -> CohortArrays:
    return frame_to_arrays(read_table(path), schema, require_target, data_cfg.max_visits)


def split_cohort(arrays: CohortArrays, data_cfg: DataConfig) -> dict[str, CohortArrays]:
    if data_cfg.cv_folds:
        idx = kfold_split(arrays.subject_ids, data_cfg.cv_folds, data_cfg.cv_fold, data_cfg.split, data_cfg.split_seed)
    else:
        idx = split_subjects(arrays.subject_ids, data_cfg.split, data_cfg.split_seed)
    return {name: arrays.subset(i) for name, i in idx.items()}
