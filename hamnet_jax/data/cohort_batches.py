"""`CohortBatches`: a cached cohort as the model's input, standardized a few rows at a time.

It answers what the training loop, validation and prediction ask of a `Batch` (`size`,
`visit_mask`, `visit_counts`, `take`, `pad_visits`, `targets`, `labels`, the widths
`validate_batch` checks, the modality mask) while the features stay on disk: `take(rows)`
reads those subjects from the cohort cache and standardizes them with the preprocessor,
so `CohortBatches(cohort, pre).take(rows)` equals `pre.transform(cohort.in_memory()).take(rows)`
and training on either sees the same batches.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import jax
import numpy as np

from hamnet_jax.data.arrays import CohortArrays
from hamnet_jax.data.batch import Batch, model_labels
from hamnet_jax.data.preprocess import Preprocessor
from hamnet_jax.modalities import MODALITIES

if TYPE_CHECKING:
    from hamnet_jax.data.cohort_cache import CachedCohort



@dataclasses.dataclass(frozen=True, eq=False)
class CohortBatches:
    cohort: CachedCohort
    preprocessor: Preprocessor
    visit_slots: int | None = None  # pad every batch to this many visit slots (None: the cache's)

    @property
    def size(self) -> int:
        return self.cohort.num_subjects

    def _pad(self, a: np.ndarray) -> np.ndarray:
        extra = (self.visit_slots or a.shape[1]) - a.shape[1]
        return a if extra <= 0 else np.pad(a, [(0, 0), (0, extra)] + [(0, 0)] * (a.ndim - 2))

    @property
    def visit_mask(self) -> np.ndarray:
        return self._pad(self.cohort.visit_mask.astype(np.float32))

    @property
    def visit_times(self) -> np.ndarray:
        return self._pad(self.cohort.visit_times.astype(np.float32))

    @property
    def targets(self) -> np.ndarray:
        return self.preprocessor.standardized_targets(self.cohort.targets)

    @property
    def labels(self) -> np.ndarray:
        return model_labels(self.cohort.labels)

    @property
    def inputs(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes only (what `validate_batch` checks): the values are read by `take`."""
        b, v = self.visit_mask.shape
        return {m: jax.ShapeDtypeStruct((b, v, int(self.preprocessor.means[m].shape[0])), np.float32)
                for m in MODALITIES}

    feature_masks = inputs

    @property
    def categorical(self) -> jax.ShapeDtypeStruct:
        b, v = self.visit_mask.shape
        return jax.ShapeDtypeStruct((b, v, len(self.preprocessor.levels)), np.int32)

    @functools.cached_property
    def modality_mask(self) -> np.ndarray:
        """[N, V, 4], one streaming pass over the cohort (its first use)."""
        transform = self.preprocessor.transform
        parts = [transform(chunk, read_from_file=True).modality_mask for chunk in self.cohort.chunks()]
        return self._pad(np.concatenate(parts) if parts else np.zeros(self.visit_mask.shape + (4,), np.float32))

    def visit_counts(self) -> np.ndarray:
        return self.cohort.visit_mask.sum(axis=1).astype(np.int64)

    def take(self, index: np.ndarray) -> Batch:
        batch = self.preprocessor.transform(self.cohort.rows(index), read_from_file=True)
        return batch.pad_visits(self.visit_slots) if self.visit_slots else batch

    def pad_visits(self, num_visits: int) -> CohortBatches:
        if num_visits <= self.visit_mask.shape[1]:
            return self
        return dataclasses.replace(self, visit_slots=num_visits)


def model_input(pre: Preprocessor, data: CohortArrays | CachedCohort) -> Batch | CohortBatches:
    """The model's input for `data`: a `Batch` of an in-memory cohort, standardized rows on
    demand (`CohortBatches`) of a cached one."""
    if isinstance(data, CohortArrays):
        return pre.transform(data)
    return CohortBatches(data, pre)
