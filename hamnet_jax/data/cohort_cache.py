"""The shared cohort cache: a data file converted once, in row chunks, into memory-mapped arrays.

At UK Biobank size (500,000 subjects x 4 visits x ~3,300 columns) a pandas frame plus padded
arrays does not fit in memory (~140 KB per subject measured). `build_cohort_cache` reads
the file twice: first the key columns (subject, visit, time, target, outcome, extras), which
fix every row's subject and visit slot and are checked as `frame_to_arrays` checks them;
then the feature columns in chunks of rows, each converted and checked (errors name the
file's row) and written into `.npy` files opened as memory maps. Memory holds one chunk
plus the key columns, whatever the cohort's size.

Content-addressed and shared: a cache's directory is named by a digest of the file's bytes,
the schema, `max_visits` and the cache format, under one root for every run on the machine
(`data.cache_dir`, else `cohorts/` under the cache root: `$HAMNET_CACHE_DIR`, default
`~/.cache/hamnet`; cache_root.py). A run names its
data by the same digest (its job.json) and the cache is rebuilt whenever it is missing, so a
run directory holds no copy of its data. `hamnet cache list | prune` manage the root.

No larger than the features themselves as float32: rows are stored packed (each subject's
kept visits one after another, no padding slots), numeric features as float32, categorical
ones as the index of their level in the schema (int8 where the levels allow; the few values
that are no level are kept exactly in `categorical_other.npz`), visit counts as bytes (the
visit mask and row offsets follow from them), subject ids as UTF-8 bytes.

Several processes meet here (`hamnet search --workers 2`, two jobs on one machine): each key
has a lock file, `.locks/<key>.lock`, held while it is built. The first process builds; the others
wait on the lock and then find the cache complete. A build works in `<key>.partial-<pid>`,
fsyncs every file, and renames the directory into place when complete: a build killed
halfway leaves nothing that could be taken for a cache. A partial directory is removed
only under the key's lock, when its builder is therefore dead.
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

from hamnet_jax.cache_root import cache_dir
from hamnet_jax.data.arrays import (SUBJECTS_PER_CHUNK, CohortArrays, check_subject_level, key_columns,
                                    numeric_columns, subject_layout)
from hamnet_jax.data.schema import Schema
from hamnet_jax.data.tables import iter_table_chunks, read_columns, table_columns
from hamnet_jax.errors import DiskFullError, InputError, is_disk_full
from hamnet_jax.file_lock import locked
from hamnet_jax.io_atomic import fsync_directory
from hamnet_jax.job_dir import file_digest
from hamnet_jax.kill_points import kill_point
from hamnet_jax.modalities import MODALITIES
from hamnet_jax.platform.freed_memory import release_freed_memory

CACHE_FORMAT = 2
ROWS_PER_CHUNK = 20_000  # file rows per chunk of the feature pass (~500 MB of float64 at 3,300 columns)
META = "meta.json"
SMALL_FIELDS = ("visit_mask", "visit_times", "targets", "labels", "subject_ids")
LOCKS = ".locks"  # one lock file per key (kept: removing a lock file others may hold would split them)
MISSING, OTHER = -1, -2  # categorical codes: no value; a value that is none of the schema's levels


def default_cache_root() -> Path:
    """`cohorts/` under the cache root (`$HAMNET_CACHE_DIR`, default `~/.cache/hamnet`)."""
    return cache_dir("cohorts")


def cache_key(path: str | os.PathLike, schema: Schema, max_visits: int | None, require_target: bool) -> str:
    text = yaml.safe_dump(schema.to_dict(), sort_keys=True)
    parts = f"{CACHE_FORMAT}|{file_digest(path)}|{text}|{max_visits}|{require_target}"
    return hashlib.sha256(parts.encode()).hexdigest()[:24]


@dataclasses.dataclass
class CachedCohort:
    """A cohort whose feature arrays stay on disk (memory maps of packed rows, read by
    subjects) and whose per-subject fields are in memory. `index` selects and orders its
    subjects (a split)."""

    features: dict[str, np.ndarray]  # "values_<m>" [R, D_m] float32, "categorical" [R, K] level codes
    visit_mask: np.ndarray
    visit_times: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    subject_ids: np.ndarray
    extras: dict[str, np.ndarray]
    index: np.ndarray
    first_row: np.ndarray  # [N_all] each cached subject's first packed row
    levels: tuple[np.ndarray, ...]  # the schema's levels of each categorical column
    others: dict[tuple[int, int], float]  # (row, column) -> a categorical value that is no level
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
        """Subjects `index` in memory, as `CohortArrays`: their packed rows read in file
        order from the maps and laid out by visit slot."""
        index = np.asarray(index, np.int64)
        visits = self.visit_mask[index].sum(1).astype(np.int64)
        subject = np.repeat(np.arange(index.size), visits)
        slot = np.arange(subject.size) - np.repeat(np.cumsum(visits) - visits, visits)
        packed = np.repeat(self.first_row[self.index[index]], visits) + slot
        order = np.argsort(packed, kind="stable")
        subject, slot, packed = subject[order], slot[order], packed[order]
        shape = (index.size, self.visit_mask.shape[1])

        def read(array: np.ndarray, fill: float = np.nan) -> np.ndarray:
            out = np.full(shape + array.shape[1:], fill, array.dtype)
            out[subject, slot] = array[packed]
            return out

        values = {m: read(self.features[f"values_{m}"]) for m in MODALITIES}
        categorical = self._categories(read(self.features["categorical"], MISSING), packed, subject, slot)
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

    def _categories(self, codes: np.ndarray, packed: np.ndarray, subject: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """Level codes [n, V, K] -> the values (float64, NaN where missing)."""
        out = np.full(codes.shape, np.nan)
        for k, levels in enumerate(self.levels):
            code = codes[..., k].astype(np.int64)
            known = code >= 0
            out[..., k][known] = levels[code[known]]
        if self.others:
            position = dict(zip(packed.tolist(), zip(subject.tolist(), slot.tolist(), strict=True), strict=True))
            for (row, k), value in self.others.items():
                if row in position:
                    out[position[row] + (k,)] = value
        return out

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
            if shape[0] == 0:  # (mmap cannot map past an empty array's header)
                return np.zeros(shape, dtype).view(cls)
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
        if self._map is None:
            return
        self._map.flush()
        self._map.madvise(mmap.MADV_DONTNEED)


def _code_dtype(levels: tuple[np.ndarray, ...]) -> type:
    most = max((lv.size for lv in levels), default=0)
    return np.int8 if most <= 127 else np.int16 if most <= 32767 else np.int32


def _allocate(path: Path, shape: tuple[int, ...], dtype: type, fill: float) -> MappedArray:
    """A `.npy` file of `shape` filled with `fill` (a slab at a time), opened for writing."""
    np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()  # the header and the size
    array = MappedArray.open(path, writable=True)
    for start in range(0, shape[0], SUBJECTS_PER_CHUNK * 4):
        array[start:start + SUBJECTS_PER_CHUNK * 4] = fill
        array.release()
    return array


def _encode_categories(raw: np.ndarray, levels: tuple[np.ndarray, ...], dtype: type,
                       rows: np.ndarray, others: dict[tuple[int, int], float]) -> np.ndarray:
    """Raw categorical values [n, K] -> level codes; values that are no level go to `others`."""
    codes = np.full(raw.shape, MISSING, dtype)
    for k, lv in enumerate(levels):
        col = raw[:, k]
        at = np.minimum(np.searchsorted(lv, col), lv.size - 1)
        present = ~np.isnan(col)
        known = present & (lv[at] == col)
        codes[known, k] = at[known]
        other = present & ~known
        codes[other, k] = OTHER
        others.update({(int(r), k): float(v) for r, v in zip(rows[other], col[other], strict=True)})
    return codes


def build_cohort_cache(path: str | os.PathLike, schema: Schema, max_visits: int | None, require_target: bool,
                       root: str | os.PathLike | None = None) -> Path:
    """The cache directory of `path` under `root` (default: `default_cache_root()`), built
    unless a complete one exists; several processes asking at once build it once."""
    root = Path(root) if root is not None else default_cache_root()
    table_columns(path)  # a missing or unreadable file is named before anything is written
    key = cache_key(path, schema, max_visits, require_target)
    final = root / key
    if (final / META).exists():
        return final
    with locked(root / LOCKS / f"{key}.lock"):
        if (final / META).exists():  # built by the process this one waited for
            return final
        for stale in root.glob(f"{key}.partial-*"):  # under the lock: their builders are dead
            shutil.rmtree(stale, ignore_errors=True)
        work = root / f"{key}.partial-{os.getpid()}"
        try:
            work.mkdir(parents=True)
            _build(path, schema, max_visits, require_target, work)
            fsync_directory(work)
            os.replace(work, final)
            fsync_directory(root)
        except BaseException as e:
            shutil.rmtree(work, ignore_errors=True)
            if is_disk_full(e):
                raise DiskFullError(final, e) from e
            raise
    return final


def _build(path: str | os.PathLike, schema: Schema, max_visits: int | None, require_target: bool,
           work: Path) -> None:
    names = table_columns(path)
    keys = [c for c in key_columns(schema) if c in names]
    layout, arrays = subject_layout(read_columns(path, keys), schema, require_target, max_visits, names,
                                    lambda name, shape, dtype: np.empty(shape[:2] + (0,), dtype))
    visits = arrays.visit_mask.sum(1).astype(np.int64)
    first_row = np.cumsum(visits) - visits
    packed_of_row = np.where(layout.slot_of_row >= 0, first_row[layout.subject_of_row] + layout.slot_of_row, -1)
    total = int(visits.sum())
    levels = tuple(np.asarray(schema.categorical[c], np.float64) for c in schema.categorical_columns)
    order = [np.argsort(lv, kind="stable") for lv in levels]
    levels = tuple(lv[o] for lv, o in zip(levels, order, strict=True))
    code_dtype = _code_dtype(levels)
    features = {f"values_{m}": _allocate(work / f"values_{m}.npy", (total, len(schema.numeric_columns(m))),
                                         np.float32, np.nan) for m in MODALITIES}
    features["categorical"] = _allocate(work / "categorical.npy", (total, len(levels)), code_dtype, MISSING)
    others: dict[tuple[int, int], float] = {}
    columns = list(dict.fromkeys(c for m in MODALITIES for c in schema.numeric_columns(m)))
    columns += [c for c in schema.categorical_columns if c not in columns]
    for first, chunk in iter_table_chunks(path, columns, ROWS_PER_CHUNK):
        rows = packed_of_row[first:first + len(chunk)]
        keep = rows >= 0
        for m in MODALITIES:
            values = numeric_columns(chunk, list(schema.numeric_columns(m)), first).astype(np.float32)
            features[f"values_{m}"][rows[keep]] = values[keep]
        raw = numeric_columns(chunk, list(schema.categorical_columns), first)
        features["categorical"][rows[keep]] = _encode_categories(raw[keep], levels, code_dtype, rows[keep], others)
        for array in features.values():
            array.release()
        kill_point("cohort_cache.chunk_written")
    slots = np.arange(arrays.visit_mask.shape[1])[None, :] < visits[:, None]
    np.save(work / "visit_counts.npy", visits.astype(np.uint8 if visits.max(initial=0) < 256 else np.uint16))
    np.save(work / "visit_times.npy", arrays.visit_times[slots])
    np.save(work / "targets.npy", arrays.targets)
    np.save(work / "labels.npy", arrays.labels)
    np.save(work / "subject_ids.npy", np.char.encode(arrays.subject_ids.astype(str), "utf-8"))
    np.savez(work / "extras.npz", **arrays.extras)
    np.savez(work / "categorical_other.npz", rows=np.array([r for r, _ in others], np.int64),
             columns=np.array([k for _, k in others], np.int64), values=np.array(list(others.values()), np.float64))
    meta = {"format": CACHE_FORMAT, "source": str(path), "subjects": arrays.num_subjects,
            "visit_slots": int(arrays.visit_mask.shape[1]), "rows": total,
            "levels": [lv.tolist() for lv in levels]}
    (work / META).write_text(json.dumps(meta))
    del arrays, layout, features
    release_freed_memory()  # the file's frames: ~1 GiB left in the pools at 500,000 subjects
    check_subject_level(_open(work), schema)  # (read back through the maps, which release what they read)
    for file in work.iterdir():
        with open(file, "rb") as f:
            os.fsync(f.fileno())


def load_cohort_cache(directory: str | os.PathLike) -> CachedCohort:
    directory = Path(directory)
    if not (directory / META).exists():
        raise InputError(f"cohort cache {directory} is incomplete (no {META}); delete it to rebuild")
    os.utime(directory / META)  # last used: `hamnet cache prune --older-than` keeps what runs still read
    return _open(directory)


def _open(directory: Path) -> CachedCohort:
    meta = json.loads((directory / META).read_text())
    if meta.get("format") != CACHE_FORMAT:
        raise InputError(f"cohort cache {directory} has format {meta.get('format')}, not {CACHE_FORMAT}; "
                         "delete it to rebuild (`hamnet cache prune`)")
    load = lambda name: np.load(directory / f"{name}.npy", allow_pickle=False)
    visits = load("visit_counts").astype(np.int64)
    slots = np.arange(meta["visit_slots"])[None, :] < visits[:, None]
    visit_times = np.zeros(slots.shape, np.float32)
    visit_times[slots] = load("visit_times")
    with np.load(directory / "extras.npz", allow_pickle=False) as z:
        extras = {k: z[k] for k in z.files}
    with np.load(directory / "categorical_other.npz", allow_pickle=False) as z:
        others = {(int(r), int(k)): float(v) for r, k, v in zip(z["rows"], z["columns"], z["values"], strict=True)}
    features = {f"values_{m}": MappedArray.open(directory / f"values_{m}.npy") for m in MODALITIES}
    features["categorical"] = MappedArray.open(directory / "categorical.npy")
    return CachedCohort(features=features, visit_mask=slots.astype(np.float32), visit_times=visit_times,
                        targets=load("targets"), labels=load("labels"),
                        subject_ids=np.char.decode(load("subject_ids"), "utf-8").astype(str), extras=extras,
                        index=np.arange(visits.size, dtype=np.int64), first_row=np.cumsum(visits) - visits,
                        levels=tuple(np.asarray(lv, np.float64) for lv in meta["levels"]), others=others)
