"""The training data's distribution, kept in the run so later data can be checked for drift.

    profile = DataProfile.fit(train_arrays, schema)     # at training time
    profile.save(run / "data_profile.npz");  DataProfile.load(...)

One observation per subject, its last visit: values of one subject at several visits are
not independent (genetics repeat exactly), and the KS test's p-value and the PSI's noise
assume independent draws. Per numeric feature: 201 quantiles (a step ECDF for
the KS statistic, 0.5% resolution), the decile edges and the share of values in each of
their bins (exact, for the PSI), and the missing rate. Per categorical column: each
level's share. Per modality: the share of subjects whose last visit lacks it entirely.
Optionally a prediction profile (the same quantiles and deciles of the model's outputs on
the validation split), for prediction drift. A few MB for the default schema's 1,648
features; raw values are never stored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hamnet_jax.data.arrays import SUBJECTS_PER_CHUNK, CohortArrays, concat_cohorts
from hamnet_jax.data.cohort_cache import CachedCohort
from hamnet_jax.data.schema import Schema
from hamnet_jax.data.split import seeded_sample
from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import write_atomic
from hamnet_jax.modalities import MODALITIES

QUANTILES = np.linspace(0.0, 1.0, 201)
DECILES = np.linspace(0.1, 0.9, 9)


@dataclasses.dataclass(frozen=True)
class NumericProfile:
    """Many numeric columns at once: row j describes column j."""

    quantiles: np.ndarray    # [F, 201], NaN rows for columns never observed
    edges: np.ndarray        # [F, 9] decile edges (ties collapse into +inf padding)
    shares: np.ndarray       # [F, 10] share of observed values per decile bin
    missing_rate: np.ndarray  # [F]
    observed: np.ndarray     # [F] number of observed values

    @classmethod
    def fit(cls, values: np.ndarray) -> NumericProfile:
        """`values`: [n, F] with NaN = missing."""
        n, f = values.shape
        quantiles = np.full((f, QUANTILES.size), np.nan)
        edges = np.full((f, DECILES.size), np.inf)
        shares = np.zeros((f, DECILES.size + 1))
        observed = (~np.isnan(values)).sum(0)
        for j in np.flatnonzero(observed):
            x = values[:, j][~np.isnan(values[:, j])]
            quantiles[j] = np.quantile(x, QUANTILES)
            unique = np.unique(np.quantile(x, DECILES))
            edges[j, : unique.size] = unique
            shares[j] = bin_shares(x, edges[j])
        missing = 1.0 - observed / max(n, 1)
        return cls(quantiles, edges, shares, missing, observed)


PROFILE_SUBJECTS = 20_000


def profile_subjects(cohort: CohortArrays | CachedCohort, seed: int = 0) -> CohortArrays:
    """The subjects a training profile is fitted on, as one visit each (their last: what a
    profile describes), read a chunk at a time: every subject up to `PROFILE_SUBJECTS`,
    else a seeded sample of that many (in memory or cached alike). A UK Biobank-sized
    cohort is profiled in ~0.13 GB (20,000 x 1,650 float32 columns), not all of its visits;
    deciles of 20,000 values are within about 0.5 percentile points of the population's."""
    return concat_cohorts([last_visit_only(part) for part in sampled_chunks(cohort, seed)])


def sampled_chunks(cohort: CohortArrays | CachedCohort, seed: int = 0) -> Iterator[CohortArrays]:
    """Every subject of `cohort` up to `PROFILE_SUBJECTS`, else a seeded sample of that many
    (in cohort order), in memory a chunk of subjects at a time."""
    index = seeded_sample(cohort.num_subjects, PROFILE_SUBJECTS, seed)
    for start in range(0, max(index.size, 1), SUBJECTS_PER_CHUNK):
        yield cohort.rows(index[start:start + SUBJECTS_PER_CHUNK])


def last_visit_only(arrays: CohortArrays) -> CohortArrays:
    """Each subject's last attended visit as its only visit."""
    rows, last = last_visit_rows(arrays)
    one = lambda a: a[rows, last][:, None]
    return dataclasses.replace(arrays, values={m: one(v) for m, v in arrays.values.items()},
                               categorical=one(arrays.categorical), visit_mask=np.ones((rows.size, 1), np.float32),
                               visit_times=np.zeros((rows.size, 1), np.float32))


def last_visit_rows(arrays: CohortArrays) -> tuple[np.ndarray, np.ndarray]:
    """Index of each subject's last attended visit (visits fill slots from 0)."""
    last = np.maximum(arrays.visit_mask.sum(1).astype(int) - 1, 0)
    return np.arange(arrays.num_subjects), last


def bin_shares(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of `x` in each bin (-inf, e0], (e0, e1], ..., (e8, inf)."""
    counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
    return counts / max(x.size, 1)


@dataclasses.dataclass(frozen=True)
class DataProfile:
    numeric_names: tuple[str, ...]
    numeric_modality: tuple[str, ...]
    numeric: NumericProfile
    categorical_names: tuple[str, ...]
    categorical_levels: tuple[tuple[float, ...], ...]
    categorical_shares: tuple[tuple[float, ...], ...]  # per level, then the share missing
    modality_absent: dict[str, float]
    subjects: int
    predictions: NumericProfile | None = None

    @classmethod
    def fit(cls, arrays: CohortArrays, schema: Schema) -> DataProfile:
        if not arrays.num_subjects:
            raise InputError("data profile: the data holds no subject")
        attended = last_visit_rows(arrays)
        names, owners, columns = [], [], []
        absent = {}
        for m in MODALITIES:
            cols = schema.numeric_columns(m) if m in schema.modalities else ()
            values = arrays.values[m][attended] if cols else np.zeros((arrays.num_subjects, 0), np.float32)
            names += cols
            owners += [m] * len(cols)
            columns.append(values)
            present = ~np.isnan(values).all(axis=1) if cols else np.zeros(values.shape[0], bool)
            if m == "lifestyle" and schema.categorical_columns:
                present |= ~np.isnan(arrays.categorical[attended]).all(axis=1)
            if cols or (m == "lifestyle" and schema.categorical_columns):
                absent[m] = float(1.0 - present.mean())
        cats = arrays.categorical[attended]
        levels, shares = [], []
        for j, _ in enumerate(schema.categorical_columns):
            level_values = tuple(float(v) for v in schema.categorical[schema.categorical_columns[j]])
            x = cats[:, j]
            levels.append(level_values)
            shares.append(tuple(float(np.mean(x == v)) for v in level_values) + (float(np.isnan(x).mean()),))
        return cls(tuple(names), tuple(owners), NumericProfile.fit(np.concatenate(columns, axis=1)),
                   tuple(schema.categorical_columns), tuple(levels), tuple(shares), absent, arrays.num_subjects)

    def with_predictions(self, predictions: np.ndarray) -> DataProfile:
        return dataclasses.replace(self, predictions=NumericProfile.fit(np.asarray(predictions, float)[:, None]))

    def save(self, path: str | Path) -> None:
        meta = {"numeric_names": self.numeric_names, "numeric_modality": self.numeric_modality,
                "categorical_names": self.categorical_names, "categorical_levels": self.categorical_levels,
                "categorical_shares": self.categorical_shares, "modality_absent": self.modality_absent,
                "subjects": self.subjects}
        arrays = {f"numeric_{k}": v for k, v in dataclasses.asdict(self.numeric).items()}
        if self.predictions is not None:
            arrays.update({f"predictions_{k}": v for k, v in dataclasses.asdict(self.predictions).items()})
        write_atomic(Path(path), lambda f: np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays),
                     mode="wb")

    @classmethod
    def load(cls, path: str | Path) -> DataProfile:
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path} does not exist: the run was trained before data profiles were kept; "
                             "pass --reference with its training data file")
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            fields = [f.name for f in dataclasses.fields(NumericProfile)]
            numeric = NumericProfile(**{k: z[f"numeric_{k}"] for k in fields})
            predictions = (NumericProfile(**{k: z[f"predictions_{k}"] for k in fields})
                           if "predictions_quantiles" in z else None)
        return cls(tuple(meta["numeric_names"]), tuple(meta["numeric_modality"]), numeric,
                   tuple(meta["categorical_names"]), tuple(tuple(x) for x in meta["categorical_levels"]),
                   tuple(tuple(x) for x in meta["categorical_shares"]), meta["modality_absent"], meta["subjects"],
                   predictions)
