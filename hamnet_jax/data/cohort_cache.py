"""An on-disk cohort cache: a data file converted once, in row chunks, into memory-mapped arrays.

At UK Biobank size (500,000 subjects x 4 visits x ~3,300 columns) a pandas frame plus padded
arrays does not fit in memory (~140 KB per subject measured). `build_cohort_cache` reads
the file twice: first the key columns (subject, visit, time, target, outcome, extras), which
fix every row's subject and visit slot and are checked as `frame_to_arrays` checks them;
then the feature columns in chunks of rows, each converted and checked (errors name the
file's row) and written into `.npy` files opened as memory maps. Memory holds one chunk
plus the key columns, whatever the cohort's size.

The cache directory's name is a digest of the file's bytes, the schema, `max_visits` and
the cache format: a changed file or schema builds a new cache, an unchanged one is reused.
It is built in a temporary directory renamed into place when complete, so a build killed
halfway leaves nothing that could be taken for a cache, and the next build starts over.
`CachedCohort` reads it back: per-subject fields in memory, features read by rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mmap
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml

from hamnet_jax.data.arrays import (SUBJECTS_PER_CHUNK, CohortArrays, check_subject_level, key_columns,
                                    scatter_features, subject_layout)
from hamnet_jax.platform.freed_memory import release_freed_memory
from hamnet_jax.data.schema import Schema
from hamnet_jax.data.tables import iter_table_chunks, read_columns, table_columns
from hamnet_jax.job_dir import file_digest
from hamnet_jax.kill_points import kill_point
from hamnet_jax.errors import InputError
from hamnet_jax.modalities import MODALITIES

CACHE_FORMAT = 1
ROWS_PER_CHUNK = 20_000  # file rows per chunk of the feature pass (~500 MB of float64 at 3,300 columns)
META = "meta.json"
SMALL_FIELDS = ("visit_mask", "visit_times", "targets", "labels", "subject_ids")


def cache_key(path: str | os.PathLike, schema: Schema, max_visits: int | None, require_target: bool) -> str:
    text = yaml.safe_dump(schema.to_dict(), sort_keys=True)
    parts = f"{CACHE_FORMAT}|{file_digest(path)}|{text}|{max_visits}|{require_target}"
    return hashlib.sha256(parts.encode()).hexdigest()[:24]


@dataclasses.dataclass
class CachedCohort:
    """A cohort whose feature arrays stay on disk (memory maps, read by rows) and whose
    per-subject fields are in memory. `index` selects and orders its subjects (a split)."""

    features: dict[str, np.ndarray]  # "values_<m>" [N, V, D_m] float32, "categorical" [N, V, K] float64
    visit_mask: np.ndarray
    visit_times: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    subject_ids: np.ndarray
    extras: dict[str, np.ndarray]
    index: np.ndarray
    removed: tuple[str, ...] = ()  # modalities read as missing (`without_modality`)

    @property
    def num_subjects(self) -> int:
        return int(self.index.size)

    def without_modality(self, modality: str) -> CachedCohort:
        """This cohort with one modality read as missing for every subject (ablation), as
        `CohortArrays.without_modality`; nothing is copied."""
        if modality not in MODALITIES:
            raise InputError(f"unknown modality {modality!r}; expected one of {list(MODALITIES)}")
        return dataclasses.replace(self, removed=self.removed + (modality,))

    def subset(self, index: np.ndarray) -> CachedCohort:
        """Subjects `index` of this one (a split of a split composes)."""
        index = np.asarray(index, np.int64)
        small = {f: getattr(self, f)[index] for f in SMALL_FIELDS}
        return dataclasses.replace(self, **small, extras={k: v[index] for k, v in self.extras.items()},
                                   index=self.index[index])

    def rows(self, index: np.ndarray) -> CohortArrays:
        """Subjects `index` in memory, as `CohortArrays` (read in file order from the maps)."""
        index = np.asarray(index, np.int64)
        source = self.index[index]
        order = np.argsort(source, kind="stable")
        back = np.empty_like(order)
        back[order] = np.arange(order.size)
        read = lambda a: a[source[order]][back]
        values = {m: read(self.features[f"values_{m}"]) for m in MODALITIES}
        categorical = read(self.features["categorical"])
        for array in self.features.values():  # (a copy is read: the pages it touched go back)
            array.release()
        data = CohortArrays(
            values=values, categorical=categorical, visit_mask=self.visit_mask[index],
            visit_times=self.visit_times[index], targets=self.targets[index], labels=self.labels[index],
            subject_ids=self.subject_ids[index], extras={k: v[index] for k, v in self.extras.items()},
        )
        for modality in self.removed:
            data = data.without_modality(modality)
        return data

    def chunks(self, size: int = SUBJECTS_PER_CHUNK) -> Iterator[CohortArrays]:
        """Consecutive subjects, `size` at a time, in memory (as `CohortArrays.chunks`)."""
        for start in range(0, max(self.num_subjects, 1), size):  # (an empty cohort: one empty chunk)
            yield self.rows(np.arange(start, min(start + size, self.num_subjects)))

    def in_memory(self) -> CohortArrays:
        return self.rows(np.arange(self.num_subjects))


class MappedArray(np.ndarray):
    """A `.npy` file's array over a memory map this process owns, so `release()` can hand its
    pages back: the pages a memory-mapped read or write touches count in the process's
    resident memory until the kernel needs them, which would grow with the cohort. The
    cache's writer releases after every chunk and the reader after every read, so
    resident memory stays bounded (the data stays in the page cache or on disk)."""

    _map: mmap.mmap

    @classmethod
    def open(cls, path: Path, writable: bool = False) -> MappedArray:
        with open(path, "r+b" if writable else "rb") as f:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(f))
            if fortran:
                raise InputError(f"cohort cache file {path} is not in C order; delete the cache to rebuild it")
            offset = f.tell()
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
        array = np.ndarray.__new__(cls, shape, dtype, buffer=mapped, offset=offset)
        array._map = mapped
        return array

    def __array_finalize__(self, obj: object) -> None:
        self._map = getattr(obj, "_map", None)

    def __getitem__(self, index):  # reads are plain arrays, not views that would keep the map's pages
        return np.asarray(np.ndarray.__getitem__(self, index))

    def release(self) -> None:
        """Write dirty pages back and drop every page from this process's resident set."""
        self._map.flush()
        self._map.madvise(mmap.MADV_DONTNEED)


def _allocate_in(directory: Path):
    def allocate(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        path = directory / f"{name}.npy"
        np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()  # the header and the size
        array = MappedArray.open(path, writable=True)
        for start in range(0, shape[0], SUBJECTS_PER_CHUNK):  # NaN = missing, written a slab at a time
            array[start:start + SUBJECTS_PER_CHUNK] = np.nan
            array.release()
        return array

    return allocate


def build_cohort_cache(path: str | os.PathLike, schema: Schema, max_visits: int | None, require_target: bool,
                       root: str | os.PathLike) -> Path:
    """The cache directory of `path` under `root`, built unless a complete one exists."""
    root = Path(root)
    table_columns(path)  # a missing or unreadable file is named before anything is written
    key = cache_key(path, schema, max_visits, require_target)
    final = root / key
    if (final / META).exists():
        return final
    for stale in root.glob(f"{key}.partial-*"):  # a killed build's leftovers
        shutil.rmtree(stale, ignore_errors=True)
    work = root / f"{key}.partial-{os.getpid()}"
    work.mkdir(parents=True)
    try:
        names = table_columns(path)
        keys = [c for c in key_columns(schema) if c in names]
        layout, arrays = subject_layout(read_columns(path, keys), schema, require_target, max_visits, names,
                                        _allocate_in(work))
        features = list(dict.fromkeys(c for m in MODALITIES for c in schema.numeric_columns(m)))
        features += [c for c in schema.categorical_columns if c not in features]
        mapped = [*arrays.values.values(), arrays.categorical]
        for first_row, chunk in iter_table_chunks(path, features, ROWS_PER_CHUNK):
            scatter_features(layout, arrays, chunk, schema, first_row)
            for array in mapped:
                array.release()
            kill_point("cohort_cache.chunk_written")
        # (read back through a CachedCohort, which releases the pages it reads)
        check_subject_level(_as_cached(arrays), schema)
        for field in SMALL_FIELDS:
            np.save(work / f"{field}.npy", getattr(arrays, field))
        np.savez(work / "extras.npz", **arrays.extras)
        meta = {"format": CACHE_FORMAT, "source": str(path), "subjects": arrays.num_subjects,
                "visit_slots": int(arrays.visit_mask.shape[1])}
        (work / META).write_text(json.dumps(meta))
        del arrays, layout
        release_freed_memory()  # the file's frames: ~1 GiB left in the pools at 500,000 subjects
        try:
            os.replace(work, final)
        except OSError:  # another process finished the same cache first: keep theirs
            if not (final / META).exists():
                raise
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return final


def _as_cached(arrays: CohortArrays) -> CachedCohort:
    features = {f"values_{m}": arrays.values[m] for m in MODALITIES} | {"categorical": arrays.categorical}
    return CachedCohort(features=features, **{f: getattr(arrays, f) for f in SMALL_FIELDS}, extras=arrays.extras,
                        index=np.arange(arrays.num_subjects, dtype=np.int64))


def load_cohort_cache(directory: str | os.PathLike) -> CachedCohort:
    directory = Path(directory)
    if not (directory / META).exists():
        raise InputError(f"cohort cache {directory} is incomplete (no {META}); delete it to rebuild")
    small = {f: np.load(directory / f"{f}.npy", allow_pickle=False) for f in SMALL_FIELDS}
    with np.load(directory / "extras.npz", allow_pickle=False) as z:
        extras = {k: z[k] for k in z.files}
    features = {f"values_{m}": MappedArray.open(directory / f"values_{m}.npy") for m in MODALITIES}
    features["categorical"] = MappedArray.open(directory / "categorical.npy")
    return CachedCohort(features=features, **small, extras=extras,
                        index=np.arange(small["visit_mask"].shape[0], dtype=np.int64))
