"""The model's inputs as a user has them: values in the units of their data file.

A raw request is a dict of float32 arrays, one per input of `RawInputSpec.names`:

* `<modality>`           [B, V, D_m] numeric features, NaN = missing (every modality the
                         run has numeric features for)
* `lifestyle_categories` [B, V, K] category values as written in the data file (the
                         schema's levels), NaN = missing (only when the run has categories)
* `visit_times`          [B, V] years relative to the subject's last visit (0 there)

Visits are left-aligned; V may be below the run's `max_visits` (padded here). A visit slot
with nothing observed counts as padding. `standardize` turns such arrays into the model's
`Batch` inside `jit` (and inside an exported graph) with the run's preprocessing folded in
as constants; it equals `Preprocessor.transform` on the same data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from hamnet_jax.data.arrays import CohortArrays
from hamnet_jax.data.batch import Batch
from hamnet_jax.data.preprocess import Preprocessor
from hamnet_jax.errors import InputError
from hamnet_jax.modalities import MODALITIES

CATEGORIES = "lifestyle_categories"
VISIT_TIMES = "visit_times"


@dataclasses.dataclass(frozen=True)
class RawInputSpec:
    """Names and shapes of a run's raw inputs (batch dimension first, then visits)."""

    widths: tuple[tuple[str, int], ...]  # (modality, D_m) for modalities with numeric features
    num_categories: int
    max_visits: int

    @classmethod
    def of(cls, preprocessor: Preprocessor, max_visits: int) -> RawInputSpec:
        widths = tuple((m, w) for m, w in preprocessor.widths().items() if w > 0)
        return cls(widths, len(preprocessor.levels), int(max_visits))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.widths) + ((CATEGORIES,) if self.num_categories else ()) + (VISIT_TIMES,)

    def feature_width(self, name: str) -> int | None:
        """Trailing width of input `name` (None for the [B, V] visit times)."""
        if name == CATEGORIES:
            return self.num_categories
        return dict(self.widths).get(name)

    def shapes(self, batch: int | str = "B", visits: int | None = None) -> dict[str, tuple]:
        v = visits or self.max_visits
        return {n: (batch, v) + (() if self.feature_width(n) is None else (self.feature_width(n),))
                for n in self.names}

# The largest magnitude a raw value may have: far beyond any measurement, and small enough that
# standardized values and the model's sums of squares stay finite in float32 (3.4e38).
RAW_LIMIT = 1e12


def validate_raw(arrays: Mapping[str, Any], spec: RawInputSpec,
                 subject_ids: Any = None) -> dict[str, np.ndarray]:
    """Checked float32 copies padded to `max_visits`. A `ValueError` (InputError) names the
    input and, for bad values, the subject row (and its id, given `subject_ids`): missing
    or unknown names, non-numeric dtypes, wrong ranks or widths, batch or visit counts that
    disagree, no subjects, ±inf or values beyond `RAW_LIMIT`, a subject with nothing
    observed at any visit."""
    def row_name(row: int) -> str:
        return f"subject row {row}" + (f" ({subject_ids[row]!r})" if subject_ids is not None else "")

    missing = [n for n in spec.names if n not in arrays]
    unknown = sorted(set(arrays) - set(spec.names))
    if missing or unknown:
        raise InputError(f"raw inputs: missing {missing}, unknown {unknown}; expected exactly {list(spec.names)}")
    out: dict[str, np.ndarray] = {}
    b = v = None
    for name in spec.names:
        a = np.asarray(arrays[name])
        if a.dtype.kind not in "fiub":
            raise InputError(f"input {name!r}: dtype {a.dtype} is not numeric (send float32, NaN = missing)")
        width = spec.feature_width(name)
        rank = 2 if width is None else 3
        if a.ndim != rank or (width is not None and a.shape[2] != width):
            want = ("B", "V") + (() if width is None else (width,))
            raise InputError(f"input {name!r}: shape {a.shape}, expected {want}")
        b = a.shape[0] if b is None else b
        v = a.shape[1] if v is None else v
        if a.shape[:2] != (b, v):
            raise InputError(f"input {name!r}: shape {a.shape} disagrees with the other inputs' [B, V] = {(b, v)}")
        if v > spec.max_visits:
            raise InputError(f"input {name!r}: {v} visit slots; the run takes at most {spec.max_visits} "
                             "(keep each subject's most recent visits)")
        # a copy, so the caller's arrays are never changed; a read-only float32 array (a server's
        # view of the request body) cannot change, and is checked where it lies
        a = a.astype(np.float32, copy=a.flags.writeable)
        if b == 0:
            raise InputError(f"input {name!r}: shape {a.shape} holds no subjects; send at least one")
        huge = np.abs(a) > RAW_LIMIT  # ±inf included; NaN compares False: missing values pass
        if huge.any():  # (one pass over the request on the hot path; the message is worked out only here)
            if np.isinf(a).any():
                inf = np.isinf(a).reshape(b, -1).any(axis=1)
                raise InputError(f"input {name!r}: ±inf at {row_name(int(np.flatnonzero(inf)[0]))} "
                                 f"({int(inf.sum())} row(s)); use NaN for missing values")
            rows = huge.reshape(b, -1)
            row = int(np.flatnonzero(rows.any(axis=1))[0])
            raise InputError(f"input {name!r}: value {float(a.reshape(b, -1)[row][rows[row]][0]):.3g} "
                             f"at {row_name(row)} is outside what the model takes (|x| <= {RAW_LIMIT:.0e}); "
                             "check its units")
        if name == VISIT_TIMES and np.isnan(a).any():
            row = int(np.flatnonzero(np.isnan(a).any(axis=1))[0])
            raise InputError(f"input {name!r}: NaN at {row_name(row)}; give 0 for padded visit slots")
        if v < spec.max_visits:  # (np.pad costs more than the checks for a one-subject request)
            a = np.pad(a, [(0, 0), (0, spec.max_visits - v)] + [(0, 0)] * (a.ndim - 2),
                       constant_values=0.0 if name == VISIT_TIMES else np.nan)
        out[name] = a
    observed = np.zeros(b, bool)
    for name in spec.names[:-1]:
        observed |= np.isfinite(out[name]).reshape(b, -1).any(axis=1)
    if not observed.all():
        row = int(np.flatnonzero(~observed)[0])
        raise InputError(f"{row_name(row)} has no modality measured at any visit ({int((~observed).sum())} such "
                         "subject(s)); HAMNet needs at least one value per subject")
    return out


def cohort_to_raw(data: CohortArrays, spec: RawInputSpec) -> dict[str, np.ndarray]:
    """The raw request for subjects loaded from a data file (`load_cohort`): the values as
    read, with visit slots that hold no observation set to NaN / 0."""
    real = data.visit_mask[..., None] > 0
    arrays = {m: np.where(real, data.values[m], np.nan).astype(np.float32) for m, _ in spec.widths}
    if spec.num_categories:
        arrays[CATEGORIES] = np.where(real, data.categorical, np.nan).astype(np.float32)
    arrays[VISIT_TIMES] = (data.visit_times * data.visit_mask).astype(np.float32)
    return arrays


def standardize(arrays: Mapping[str, Any], preprocessor: Preprocessor, spec: RawInputSpec) -> Batch:
    """Raw arrays -> the model's standardized `Batch`, traceable (`jnp`), the
    preprocessor's statistics and category levels as constants."""
    first = arrays[spec.names[0]]
    b, v = first.shape[0], first.shape[1]
    inputs, masks, observed_any = {}, {}, None
    for m in MODALITIES:
        width = dict(spec.widths).get(m, 0)
        if not width:
            # two arrays, not one: each graph output needs its own value to carry its name
            inputs[m], masks[m] = jnp.zeros((b, v, 0), jnp.float32), jnp.zeros((b, v, 0), jnp.float32)
            continue
        x = arrays[m]
        observed = ~jnp.isnan(x)
        mean, std = jnp.asarray(preprocessor.means[m]), jnp.asarray(preprocessor.stds[m])
        inputs[m] = jnp.where(observed, (jnp.where(observed, x, 0.0) - mean) / std, 0.0).astype(jnp.float32)
        masks[m] = observed.astype(jnp.float32)
        seen = observed.any(-1)
        observed_any = seen if observed_any is None else observed_any | seen
    codes = jnp.zeros((b, v, 0), jnp.int32)
    cat_present = jnp.zeros((b, v), bool)
    if spec.num_categories:
        cats = arrays[CATEGORIES]
        columns = []
        for k, levels in enumerate(preprocessor.levels):
            lv = jnp.asarray(np.asarray(levels, np.float32))
            match = cats[..., k, None] == lv  # NaN matches nothing: code 0 = missing
            columns.append((match * jnp.arange(1, lv.shape[0] + 1, dtype=jnp.int32)).sum(-1).astype(jnp.int32))
        codes = jnp.stack(columns, -1)
        cat_present = (codes > 0).any(-1)
        seen = (~jnp.isnan(cats)).any(-1)
        observed_any = seen if observed_any is None else observed_any | seen
    visit_mask = observed_any.astype(jnp.float32)
    modality_mask = jnp.stack(
        [masks[m].any(-1) | (cat_present if m == "lifestyle" else False) for m in MODALITIES], -1
    ).astype(jnp.float32) * visit_mask[..., None]
    zeros = jnp.zeros((b,), jnp.float32)
    return Batch(inputs=inputs, feature_masks=masks, categorical=codes, modality_mask=modality_mask,
                 visit_mask=visit_mask, visit_times=arrays[VISIT_TIMES] * visit_mask, targets=zeros, labels=zeros)


def random_raw(spec: RawInputSpec, preprocessor: Preprocessor, batch_size: int, seed: int = 0,
               missing: float = 0.2) -> dict[str, np.ndarray]:
    """A valid raw request of plausible values (the training distribution's mean ± std,
    the schema's category levels), `missing` of the values NaN, 1..V visits per subject;
    used for export parity checks, benchmarks and tests."""
    rng = np.random.default_rng(seed)
    b, v = batch_size, spec.max_visits
    visits = rng.integers(1, v + 1, size=b)
    real = np.arange(v)[None, :] < visits[:, None]  # [B, V]
    arrays: dict[str, np.ndarray] = {}
    for m, width in spec.widths:
        x = preprocessor.means[m] + preprocessor.stds[m] * rng.standard_normal((b, v, width))
        keep = (rng.random((b, v, width)) >= missing) & real[..., None]
        keep[:, 0, 0] = True  # every subject has a value at its first visit
        arrays[m] = np.where(keep, x, np.nan).astype(np.float32)
    if spec.num_categories:
        cats = np.full((b, v, spec.num_categories), np.nan, np.float32)
        for k, levels in enumerate(preprocessor.levels):
            if len(levels):
                drawn = np.asarray(levels)[rng.integers(0, len(levels), size=(b, v))]
                cats[..., k] = np.where(real & (rng.random((b, v)) >= missing), drawn, np.nan)
        arrays[CATEGORIES] = cats
    gaps = rng.uniform(1.0, 4.0, size=(b, v))
    times = np.cumsum(gaps, axis=1)
    last = times[np.arange(b), visits - 1]
    arrays[VISIT_TIMES] = np.where(real, times - last[:, None], 0.0).astype(np.float32)
    return arrays
