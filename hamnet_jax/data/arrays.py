"""Long frame (one row per subject-visit) + schema -> `CohortArrays`, raw and padded.

Values stay in their units with NaN for missing; `Preprocessor` later standardizes them
into a `Batch`. Validation errors name the column and the first bad row (0-based data
row of the file, header excluded).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np
import pandas as pd

from hamnet_jax.data.schema import Schema
from hamnet_jax.errors import InputError
from hamnet_jax.modalities import MODALITIES

SUBJECTS_PER_CHUNK = 2048  # subjects per chunk of a streaming pass (~55 MB of float32 at 1,650 columns)


@dataclasses.dataclass
class CohortArrays:
    """Padded per-subject arrays: N subjects, V visit slots (real visits first)."""

    values: dict[str, np.ndarray]  # m -> [N, V, D_m] float32, NaN = missing
    categorical: np.ndarray        # [N, V, K] float64 raw category values, NaN = missing
    visit_mask: np.ndarray         # [N, V] float32
    visit_times: np.ndarray        # [N, V] float32 years relative to the last visit
    targets: np.ndarray            # [N] float32 target at the last visit (NaN if absent)
    labels: np.ndarray             # [N] float32 outcome (NaN if absent)
    subject_ids: np.ndarray        # [N] str
    extras: dict[str, np.ndarray]  # name -> [N] value at the last visit

    @property
    def num_subjects(self) -> int:
        return int(self.visit_mask.shape[0])

    def chunks(self, size: int = SUBJECTS_PER_CHUNK) -> Iterator[CohortArrays]:
        """Consecutive subjects, `size` at a time: what streaming reductions (the
        preprocessor's statistics, the data checks) run over, in memory or from a cache."""
        for start in range(0, max(self.num_subjects, 1), size):  # (an empty cohort: one empty chunk)
            yield self.subset(np.arange(start, min(start + size, self.num_subjects)))

    def subset(self, index: np.ndarray) -> CohortArrays:
        return CohortArrays(
            values={m: v[index] for m, v in self.values.items()},
            categorical=self.categorical[index], visit_mask=self.visit_mask[index],
            visit_times=self.visit_times[index], targets=self.targets[index],
            labels=self.labels[index], subject_ids=self.subject_ids[index],
            extras={k: v[index] for k, v in self.extras.items()},
        )

    def rows(self, index: np.ndarray) -> CohortArrays:
        """Subjects `index` in memory (as `CachedCohort.rows`, which reads them from disk)."""
        return self.subset(index)

    def in_memory(self) -> CohortArrays:
        return self

    def without_modality(self, modality: str) -> CohortArrays:
        """A copy with one modality removed from every subject (ablation)."""
        if modality not in MODALITIES:
            raise InputError(f"unknown modality {modality!r}; expected one of {list(MODALITIES)}")
        values = dict(self.values)
        values[modality] = np.full_like(values[modality], np.nan)
        cat = np.full_like(self.categorical, np.nan) if modality == "lifestyle" else self.categorical
        return dataclasses.replace(self, values=values, categorical=cat)


def concat_cohorts(parts: list[CohortArrays]) -> CohortArrays:
    """The subjects of `parts` (same widths and visit slots) in order, as one cohort."""
    join = lambda f: np.concatenate([f(p) for p in parts])
    first = parts[0]
    return CohortArrays(
        values={m: join(lambda p, m=m: p.values[m]) for m in first.values},
        categorical=join(lambda p: p.categorical), visit_mask=join(lambda p: p.visit_mask),
        visit_times=join(lambda p: p.visit_times), targets=join(lambda p: p.targets), labels=join(lambda p: p.labels),
        subject_ids=join(lambda p: p.subject_ids), extras={k: join(lambda p, k=k: p.extras[k]) for k in first.extras},
    )


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_finite(data: CohortArrays) -> None:
    """±inf anywhere in library-built arrays is an error naming the field, the index and the
    subject (NaN is the missing marker); files are checked cell by cell when read."""
    fields = {f"values[{m!r}]": v for m, v in data.values.items()}
    fields |= {"categorical": data.categorical, "visit_times": data.visit_times, "targets": data.targets,
               "labels": data.labels}
    for name, x in fields.items():
        bad = np.argwhere(np.isinf(x))
        if bad.size:
            index = tuple(int(i) for i in bad[0])
            raise InputError(f"CohortArrays.{name}: infinite value at index {index} (subject "
                             f"{str(data.subject_ids[index[0]])!r}); NaN marks a missing value, ±inf is not accepted")


class Chunked(Protocol):
    """A cohort a check reads in chunks of subjects: `CohortArrays`, or the cohort cache's
    `CachedCohort` (which builds on this module, so it is named only by what it offers)."""

    targets: np.ndarray
    labels: np.ndarray

    @property
    def num_subjects(self) -> int: ...

    def chunks(self) -> Iterator[CohortArrays]: ...


def check_trainable(data: Chunked, schema: Schema, outcome: bool = True) -> None:
    """What training data must have beyond being readable: every schema column observed in
    some row, a target that varies and, when a classification head trains on it (`outcome`),
    a 0/1 outcome with both values."""
    columns = {m: schema.numeric_columns(m) for m in MODALITIES}
    seen = {m: np.zeros(len(names), bool) for m, names in columns.items()}
    seen_categorical = np.zeros(len(schema.categorical_columns), bool)
    for chunk in data.chunks():  # (one streaming pass when the cohort is cached)
        for m in MODALITIES:
            seen[m] |= ~np.all(np.isnan(chunk.values[m]), axis=(0, 1))
        seen_categorical |= ~np.all(np.isnan(chunk.categorical), axis=(0, 1))
    for m, names in columns.items():
        never = np.flatnonzero(~seen[m]) if data.num_subjects else []
        if len(never):
            raise InputError(f"column {names[never[0]]!r} ({m}) has no value in any row of the data file; "
                             "remove it from the schema")
    never = np.flatnonzero(~seen_categorical)
    if never.size:
        raise InputError(f"column {schema.categorical_columns[never[0]]!r} (lifestyle) has no value in any row "
                         "of the data file; remove it from the schema")
    learned = ((schema.target, data.targets),) + (((schema.outcome, data.labels),) if outcome else ())
    for name, values in learned:
        distinct = np.unique(values[np.isfinite(values)])
        if name and distinct.size == 1:
            raise InputError(f"column {name!r} has the single value {distinct[0]:g} in every row; "
                             "a model cannot learn from a constant")
    if not (outcome and schema.outcome):
        return
    missing = np.flatnonzero(np.isnan(data.labels))
    if missing.size:
        raise InputError(f"column {schema.outcome!r}: subject {str(data.subject_ids[missing[0]])!r} has no outcome "
                         f"at its last visit ({missing.size} subject(s) without one); the classification head "
                         "learns it for every subject")
    if not np.isin(data.labels, (0.0, 1.0)).all():
        raise InputError(f"column {schema.outcome!r}: the outcome is binary; found the value "
                         f"{data.labels[~np.isin(data.labels, (0.0, 1.0))][0]:g} (expected 0 or 1)")


def numeric_columns(frame: pd.DataFrame, columns: list[str], first_row: int = 0) -> np.ndarray:
    """Columns as float64, raising with the column and first row that is not a number, is
    ±inf (NaN is the missing marker; an infinite cell would poison the fitted statistics),
    or does not fit in float32. `first_row` is the file row of the frame's first row (a
    chunk of a file read in chunks), so errors name the file's row."""
    out = np.empty((len(frame), len(columns)), np.float64)
    for j, col in enumerate(columns):
        series = frame[col]
        if series.dtype.kind in "biuf":
            out[:, j] = series.to_numpy(np.float64, na_value=np.nan)
        else:
            coerced = pd.to_numeric(series, errors="coerce")
            bad = coerced.isna() & series.notna() & (series.astype(str).str.strip().str.lower() != "nan")
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise InputError(f"column {col!r}: non-numeric value {series.iloc[row]!r} at row {first_row + row}")
            out[:, j] = coerced.to_numpy(np.float64, na_value=np.nan)
        huge = np.abs(out[:, j]) > FLOAT32_MAX
        if huge.any():
            row = int(np.flatnonzero(huge)[0])
            what = "infinite" if np.isinf(out[row, j]) else "out-of-range (beyond float32)"
            raise InputError(f"column {col!r}: {what} value {out[row, j]:g} at row {first_row + row}; "
                             "leave a missing value empty (NaN), never ±inf")
    return out


def key_columns(schema: Schema) -> list[str]:
    """The columns that place a row (subject, visit, time) or hold one value per subject
    (target, outcome, extras): read whole when the features are read in chunks."""
    names = [schema.subject_id, schema.visit, schema.time, schema.target, schema.outcome, *schema.extra]
    return list(dict.fromkeys(c for c in names if c))


def _check_columns(frame: pd.DataFrame, schema: Schema, require_target: bool,
                   file_columns: list[str] | None = None) -> None:
    """Every column the schema names is present (among `file_columns`, the file's header,
    when `frame` holds only the key columns), there are rows, and every row has a subject id."""
    needed = [schema.subject_id] + [c for m in MODALITIES for c in schema.modalities[m]]
    needed += [c for c in (schema.visit, schema.time) if c]
    if require_target:  # labelled data: the target and / or the outcome a model learns
        if not (schema.target or schema.outcome):
            raise InputError("schema names neither a 'target' (regression) nor an 'outcome' (binary "
                             "classification) column, and no --target was given")
        needed.append(schema.target or schema.outcome)
    present = set(frame.columns if file_columns is None else file_columns)
    missing = [c for c in needed if c not in present]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"missing column {missing[0]!r}{more} in the data file; the schema requires it")
    if len(frame) == 0:
        raise InputError("the data file has no rows")
    if frame[schema.subject_id].isna().any():
        row = int(np.flatnonzero(frame[schema.subject_id].isna().to_numpy())[0])
        raise InputError(f"column {schema.subject_id!r}: missing subject id at row {row}")


def _visit_order(frame: pd.DataFrame, schema: Schema, subject_key: np.ndarray) -> np.ndarray:
    """Row order by subject, then visit (file order without a visit column); a visit given
    twice for a subject is an error naming the row."""
    if not schema.visit:
        return np.argsort(subject_key, kind="stable")
    visit = numeric_columns(frame, [schema.visit])[:, 0]
    if np.isnan(visit).any():
        row = int(np.flatnonzero(np.isnan(visit))[0])
        raise InputError(f"column {schema.visit!r}: visit is missing at row {row}")
    order = np.lexsort((visit, subject_key))
    s_key, v_key = subject_key[order], visit[order]
    dup = np.flatnonzero((s_key[1:] == s_key[:-1]) & (v_key[1:] == v_key[:-1]))
    if dup.size:
        row = int(order[dup[0] + 1])
        raise InputError(f"column {schema.visit!r}: subject {s_key[dup[0]]!r} has visit {v_key[dup[0]]:g} "
                         f"twice (second at row {row})")
    return order


@dataclasses.dataclass(frozen=True)
class VisitLayout:
    """Where each file row goes: its subject's index and its visit slot (-1: a visit beyond
    `max_visits`, dropped)."""

    subject_of_row: np.ndarray  # [rows] int64
    slot_of_row: np.ndarray     # [rows] int64
    num_subjects: int
    num_slots: int

    def scatter(self, out: np.ndarray, values: np.ndarray, first_row: int = 0) -> np.ndarray:
        """Write file rows `first_row ...` (`values`, one row each) into `out` [N, V, ...]."""
        rows = slice(first_row, first_row + len(values))
        slot = self.slot_of_row[rows]
        keep = slot >= 0
        out[self.subject_of_row[rows][keep], slot[keep]] = values[keep]
        return out

    def pad(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """File-order rows -> [N, V, ...] by subject and visit slot."""
        out = np.full((self.num_subjects, self.num_slots) + values.shape[1:], fill, values.dtype)
        return self.scatter(out, values)


Allocate = Callable[[str, tuple[int, ...], type], np.ndarray]


def _in_memory(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.full(shape, np.nan, dtype)


def subject_layout(
    frame: pd.DataFrame, schema: Schema, require_target: bool = True, max_visits: int | None = None,
    file_columns: list[str] | None = None, allocate: Allocate = _in_memory,
) -> tuple[VisitLayout, CohortArrays]:
    """The key columns of `frame` (`key_columns`; any others are ignored) checked and laid
    out: each row's subject and visit slot, ordered by visit, keeping each subject's most
    recent `max_visits`. Returns the layout and the cohort's arrays with the per-subject
    fields filled and the feature arrays (`values`, `categorical`) from `allocate`, all
    NaN, for `VisitLayout.scatter` to fill."""
    _check_columns(frame, schema, require_target, file_columns)
    frame = frame.reset_index(drop=True)
    # every column converted (and checked) in file order, so errors name the file's row
    column = lambda name: numeric_columns(frame, [name])[:, 0]
    target = column(schema.target) if schema.target and schema.target in frame.columns else np.full(len(frame), np.nan)
    if require_target and schema.target and np.isnan(target).any():
        row = int(np.flatnonzero(np.isnan(target))[0])
        raise InputError(f"column {schema.target!r}: target is NaN at row {row}")
    times = column(schema.time) if schema.time else None
    if times is not None and np.isnan(times).any():
        row = int(np.flatnonzero(np.isnan(times))[0])
        raise InputError(f"column {schema.time!r}: visit time is NaN at row {row}")
    labels = column(schema.outcome) if schema.outcome and schema.outcome in frame else np.full(len(frame), np.nan)
    extra = {c: column(c) for c in schema.extra if c in frame.columns}

    subject_key = frame[schema.subject_id].astype(str).to_numpy()
    order = _visit_order(frame, schema, subject_key)
    codes, subjects = pd.factorize(subject_key[order], sort=False)
    rank = pd.Series(codes).groupby(codes, sort=False).cumcount().to_numpy()
    counts = np.bincount(codes)
    v_total = int(counts.max())
    v = min(v_total, max_visits) if max_visits else v_total
    drop = counts[codes] - v  # keep the most recent v visits
    n = len(subjects)
    subject_of_row, slot_of_row = np.empty(len(frame), np.int64), np.empty(len(frame), np.int64)
    subject_of_row[order], slot_of_row[order] = codes, np.where(rank - np.maximum(drop, 0) >= 0,
                                                                 rank - np.maximum(drop, 0), -1)
    layout = VisitLayout(subject_of_row, slot_of_row, n, v)

    if times is None:
        times = np.empty(len(frame))
        times[order] = rank  # one year per visit when no time column is given
    visit_mask = layout.pad(np.ones(len(frame), np.float32), 0.0)
    n_visits = visit_mask.sum(1).astype(int)
    last_slot = n_visits - 1
    time_grid = layout.pad(times)
    last_time = time_grid[np.arange(n), last_slot]
    visit_times = np.nan_to_num((time_grid - last_time[:, None]) * visit_mask).astype(np.float32)
    at_last = lambda col_values: layout.pad(col_values)[np.arange(n), last_slot]
    values = {m: allocate(f"values_{m}", (n, v, len(schema.numeric_columns(m))), np.float32) for m in MODALITIES}
    arrays = CohortArrays(
        values=values, categorical=allocate("categorical", (n, v, len(schema.categorical_columns)), np.float64),
        visit_mask=visit_mask, visit_times=visit_times,
        targets=at_last(target).astype(np.float32), labels=at_last(labels).astype(np.float32),
        subject_ids=np.asarray(subjects, dtype=str), extras={c: at_last(x) for c, x in extra.items()},
    )
    return layout, arrays


def scatter_features(layout: VisitLayout, arrays: CohortArrays, frame: pd.DataFrame, schema: Schema,
                     first_row: int = 0) -> None:
    """Convert (and check) the feature columns of `frame`, file rows `first_row ...`, into
    `arrays`' feature arrays."""
    for m in MODALITIES:
        layout.scatter(arrays.values[m], numeric_columns(frame, list(schema.numeric_columns(m)), first_row)
                       .astype(np.float32), first_row)
    layout.scatter(arrays.categorical, numeric_columns(frame, list(schema.categorical_columns), first_row),
                   first_row)


def frame_to_arrays(
    frame: pd.DataFrame, schema: Schema, require_target: bool = True, max_visits: int | None = None
) -> CohortArrays:
    """Group rows by subject (ordered by visit) and pad to V visit slots.

    With `max_visits`, subjects with more visits keep their most recent `max_visits`.
    """
    layout, arrays = subject_layout(frame, schema, require_target, max_visits)
    scatter_features(layout, arrays, frame.reset_index(drop=True), schema)
    check_subject_level(arrays, schema)
    return arrays


def check_subject_level(data: Chunked, schema: Schema) -> None:
    """A modality the schema marks `subject_level` is encoded once per subject, so each of
    its columns must hold one value per subject (missing at some visits is fine)."""
    for chunk in data.chunks():
        _check_subject_level_chunk(chunk, schema)


def _check_subject_level_chunk(data: CohortArrays, schema: Schema) -> None:
    for m in schema.subject_level:
        columns = list(schema.numeric_columns(m))
        grids = [data.values[m]]
        if m == "lifestyle" and schema.categorical_columns:
            columns += list(schema.categorical_columns)
            grids.append(data.categorical)
        grid = np.concatenate([g.astype(np.float64) for g in grids], axis=-1)  # [N, V, D]
        if not grid.size:
            continue
        lo = np.where(np.isnan(grid), np.inf, grid).min(axis=1)
        hi = np.where(np.isnan(grid), -np.inf, grid).max(axis=1)
        differs = np.isfinite(lo) & (hi - lo > 1e-6 * np.maximum(np.abs(lo), 1.0))
        if differs.any():
            subject, col = map(int, np.argwhere(differs)[0])
            raise InputError(f"column {columns[col]!r} ({m}) is subject_level in the schema, but subject "
                             f"{str(data.subject_ids[subject])!r} has different values at different visits "
                             f"({lo[subject, col]:g} and {hi[subject, col]:g}); remove {m} from subject_level "
                             f"or give one value per subject")
