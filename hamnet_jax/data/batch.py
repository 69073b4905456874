"""`Batch`: the pytree every model, step and exporter consumes.

Shapes (B subjects, V visits):

* `inputs[m]`        float32 [B, V, D_m] per modality m, missing entries zero-filled
* `feature_masks[m]` float32 [B, V, D_m], 1 where the value was observed
* `categorical`      int32   [B, V, K] lifestyle category codes, 0 = missing
* `modality_mask`    float32 [B, V, 4], 1 where the modality was measured at that visit
* `visit_mask`       float32 [B, V], 1 for real visits (padding at the end)
* `visit_times`      float32 [B, V], years relative to the subject's last visit (<= 0)
* `targets`          float32 [B], regression target at the last visit (standardized)
* `labels`           float32 [B], binary outcome for the classification head (0 if unused)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import flax.struct
import jax
import numpy as np

from hamnet_jax.errors import InputError
from hamnet_jax.modalities import MODALITIES


class InputWidths(Protocol):
    """What a batch must match: the widths of a model's inputs (`HAMNetConfig` has them;
    data sits below models in the layers, so it names only these fields)."""

    clinical_dim: int
    imaging_dim: int
    genetic_dim: int
    lifestyle_dim: int
    lifestyle_cardinalities: Sequence[int]


def model_labels(labels: np.ndarray) -> np.ndarray:
    """The batch's `labels`: the 0/1 outcome, a missing one 0 (no outcome head reads it then)."""
    return np.nan_to_num(labels).astype(np.float32)


@flax.struct.dataclass
class Batch:
    inputs: dict[str, Any]
    feature_masks: dict[str, Any]
    categorical: Any
    modality_mask: Any
    visit_mask: Any
    visit_times: Any
    targets: Any
    labels: Any

    @property
    def size(self) -> int:
        return int(self.visit_mask.shape[0])

    def take(self, index: np.ndarray) -> Batch:
        """Rows `index` of every field (host-side numpy indexing)."""
        return jax.tree_util.tree_map(lambda a: a[index], self)

    def visit_counts(self) -> np.ndarray:
        """Real visits per subject (visits are left-aligned: padding sits at the end)."""
        return np.asarray(self.visit_mask).sum(axis=1).astype(np.int64)

    def trim_visits(self, num_visits: int) -> Batch:
        """The first `num_visits` visit slots of every per-visit field (exact when no subject
        has more real visits: the dropped slots are padding)."""
        cut = lambda a: a[:, :num_visits]
        return self.replace(inputs=jax.tree_util.tree_map(cut, self.inputs),
                            feature_masks=jax.tree_util.tree_map(cut, self.feature_masks),
                            categorical=cut(self.categorical), modality_mask=cut(self.modality_mask),
                            visit_mask=cut(self.visit_mask), visit_times=cut(self.visit_times))


    def pad_visits(self, num_visits: int) -> Batch:
        """Every per-visit field padded with empty visit slots up to `num_visits` (the
        inverse of `trim_visits`; results do not change: the new slots are masked)."""
        extra = num_visits - int(self.visit_mask.shape[1])
        if extra <= 0:
            return self
        pad = lambda a: np.pad(np.asarray(a), [(0, 0), (0, extra)] + [(0, 0)] * (np.ndim(a) - 2))
        return self.replace(inputs=jax.tree_util.tree_map(pad, self.inputs),
                            feature_masks=jax.tree_util.tree_map(pad, self.feature_masks),
                            categorical=pad(self.categorical), modality_mask=pad(self.modality_mask),
                            visit_mask=pad(self.visit_mask), visit_times=pad(self.visit_times))


def validate_batch(batch: Batch, config: InputWidths) -> None:
    """Check widths against `config` and that every subject has some modality (host side)."""
    b, v = np.shape(batch.visit_mask)
    for m in MODALITIES:
        want = (b, v, getattr(config, f"{m}_dim"))
        for field in ("inputs", "feature_masks"):
            got = tuple(getattr(batch, field)[m].shape)  # (arrays, or the shapes a CohortBatches gives)
            if got != want:
                raise InputError(
                    f"batch.{field}[{m!r}] has shape {got}; the model config expects {want} "
                    f"({m}_dim={want[2]})"
                )
    want_k = (b, v, len(config.lifestyle_cardinalities))
    if tuple(batch.categorical.shape) != want_k:
        raise InputError(f"batch.categorical has shape {tuple(batch.categorical.shape)}; expected {want_k}")
    if tuple(np.shape(batch.modality_mask)) != (b, v, len(MODALITIES)):
        raise InputError(f"batch.modality_mask has shape {np.shape(batch.modality_mask)}; expected {(b, v, 4)}")
    empty = subjects_without_modality(batch)
    if empty.size:
        raise InputError(
            f"subject row {int(empty[0])} of the batch has no modality measured at any visit "
            f"({empty.size} such subject(s)); HAMNet needs at least one modality per subject"
        )


def subjects_without_modality(batch: Batch) -> np.ndarray:
    """Row indices of subjects with no modality measured at any real visit."""
    present = np.asarray(batch.modality_mask) * np.asarray(batch.visit_mask)[..., None]
    return np.flatnonzero(present.sum(axis=(1, 2)) == 0)


def random_batch(config: InputWidths, batch_size: int, num_visits: int = 4, seed: int = 0) -> Batch:
    """A batch of random values with random feature, modality and visit masks.

    Every subject keeps at least its first visit and one modality there, so the batch is
    valid input; used for shape inference, export parity checks and tests.
    """
    rng = np.random.default_rng(seed)
    b, v = batch_size, num_visits
    inputs, masks = {}, {}
    for m in MODALITIES:
        d = getattr(config, f"{m}_dim")
        mask = (rng.random((b, v, d)) < 0.8).astype(np.float32)
        inputs[m] = (rng.standard_normal((b, v, d)) * mask).astype(np.float32)
        masks[m] = mask
    n_visits = rng.integers(1, v + 1, size=b)
    visit_mask = (np.arange(v)[None, :] < n_visits[:, None]).astype(np.float32)
    modality_mask = (rng.random((b, v, len(MODALITIES))) < 0.7).astype(np.float32)
    modality_mask[:, 0, rng.integers(0, len(MODALITIES))] = 1.0
    cards = np.asarray(config.lifestyle_cardinalities or [1])
    codes = rng.integers(0, cards + 1, size=(b, v, len(cards)))[..., : len(config.lifestyle_cardinalities)]
    times = -np.cumsum(rng.uniform(1.0, 4.0, size=(b, v)), axis=1)[:, ::-1]
    times = (times - np.take_along_axis(times, (n_visits - 1)[:, None], 1)) * visit_mask
    return Batch(
        inputs=inputs,
        feature_masks=masks,
        categorical=codes.astype(np.int32),
        modality_mask=modality_mask,
        visit_mask=visit_mask,
        visit_times=times.astype(np.float32),
        targets=rng.standard_normal(b).astype(np.float32),
        labels=(rng.random(b) < 0.2).astype(np.float32),
    )
