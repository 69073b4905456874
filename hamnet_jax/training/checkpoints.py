"""Checkpoints of the train state: `checkpoints/latest` and `checkpoints/best`.

A checkpoint is a directory `<kind>/<step>/` with `state.npz` (every array of the state
pytree, whole on the host, named by its tree path) and `meta.json` (the loop's bookkeeping:
epoch, best score, history, for `--resume`). It is written under a temporary name,
fsynced and renamed into place; only then is the previous step removed, so a crash at
any moment leaves one complete checkpoint of each kind.

Why not orbax, which wrote these before: its save costs 0.30-0.35 s of CPU for the standard
tier's ~6 MB state (tensorstore, asyncio and metadata machinery over ~120 leaves; this
writer takes 0.03 s), and with a save of `latest` every epoch and of `best` at every
improvement it took 25.6 s of a 166 s `hamnet train --tier standard` (py-spy, issue 14).
The state of HAMNet is small enough to gather on one host. Multi-process runs gather each
array across processes, process 0 writes, and every process reads the file back onto its
own devices (a shared filesystem, as orbax also needs). Checkpoints orbax wrote are still
restored.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import disk_full_names, recover_directories, replace_directory, temporary_directory
from hamnet_jax.kill_points import kill_point

KINDS = ("latest", "best")
STATE_FILE, META_FILE = "state.npz", "meta.json"


def _named_leaves(tree: Any) -> list[tuple[str, Any]]:
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _on_host(leaf: Any) -> np.ndarray:
    """The whole array on this host (gathered from every process when it is split across them)."""
    if isinstance(leaf, jax.Array):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if not leaf.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
    return np.asarray(leaf)


def _as_stored(array: np.ndarray) -> np.ndarray:
    """numpy's npz keeps only numpy's own dtypes: bfloat16 & co are stored as their bits."""
    if array.dtype.kind == "V" or type(array.dtype).__module__.startswith("ml_dtypes"):
        return array.view(np.dtype(f"u{array.dtype.itemsize}"))
    return array


def holds_checkpoints(directory: str | Path) -> bool:
    """Whether `directory` (a run's `checkpoints/`, at any depth: derived runs nest theirs by
    stage) holds a complete checkpoint to resume from, this writer's or orbax's."""
    root = Path(directory)
    return (any(p.parent.name.isdigit() for p in root.glob(f"**/{META_FILE}"))
            or any(root.glob("**/_CHECKPOINT_METADATA")))


class Checkpoints:
    def __init__(self, directory: str | Path):
        self.root = Path(directory).absolute()
        self.primary = jax.process_index() == 0
        if self.primary:  # a crashed save's leftovers: temporary folders removed, a set-aside step put back
            for kind in KINDS:
                recover_directories(self.root / kind)

    def _steps(self, kind: str) -> list[int]:
        folder = self.root / kind
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []

    def save(self, kind: str, step: int, state: Any, meta: dict) -> None:
        """Write `state` and `meta` as checkpoint `step` of `kind` (replacing an existing one)."""
        arrays = {name: _on_host(leaf) for name, leaf in _named_leaves(state)}  # every process joins the gathers
        if self.primary:
            folder = self.root / kind
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / str(step)
            tmp = temporary_directory(final)
            try:
                with disk_full_names(final):
                    self._write(tmp, arrays, meta)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)  # (the previous checkpoint stays the complete one)
                raise
            replace_directory(tmp, final)  # (a forced re-save of the same step replaces it)
            for old in self._steps(kind):
                if old != step:
                    shutil.rmtree(folder / str(old), ignore_errors=True)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"hamnet checkpoint {kind} {step}")
        kill_point(f"checkpoint.{kind}_saved")

    @staticmethod
    def _write(tmp: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
        dtypes = {name: str(a.dtype) for name, a in arrays.items()}
        with open(tmp / STATE_FILE, "wb") as f:
            np.savez(f, **{name: _as_stored(a) for name, a in arrays.items()})
            f.flush()
            os.fsync(f.fileno())
        with open(tmp / META_FILE, "w") as f:
            json.dump({"meta": meta, "dtypes": dtypes}, f)
            f.flush()
            os.fsync(f.fileno())

    def latest_step(self, kind: str = "latest") -> int | None:
        steps = self._steps(kind)
        return steps[-1] if steps else None

    def _folder(self, kind: str) -> Path:
        step = self.latest_step(kind)
        if step is None:
            raise FileNotFoundError(f"no {kind} checkpoint under {self.root / kind}")
        return self.root / kind / str(step)

    def restore(self, kind: str, like: Any) -> tuple[Any, dict]:
        """The newest checkpoint of `kind` in the structure, dtypes and shardings of `like`."""
        folder = self._folder(kind)
        if not (folder / STATE_FILE).exists():
            return _restore_orbax(folder, like)
        manifest = json.loads((folder / META_FILE).read_text())
        with np.load(folder / STATE_FILE) as stored:
            leaves = []
            for name, want in _named_leaves(like):
                if name not in stored:
                    raise InputError(f"checkpoint {folder} has no array {name}: it was written for another "
                                     "model or optimizer")
                array = stored[name]
                dtype = jax.numpy.dtype(manifest["dtypes"][name])
                if array.dtype != dtype:  # stored as its bits (_as_stored)
                    array = array.view(dtype)
                leaves.append(_like(array, want, name, folder))
        treedef = jax.tree_util.tree_structure(like)
        return jax.tree_util.tree_unflatten(treedef, leaves), manifest["meta"]

    def read_meta(self, kind: str = "latest") -> dict | None:
        """The bookkeeping of the newest checkpoint of `kind`, without its arrays."""
        if self.latest_step(kind) is None:
            return None
        folder = self._folder(kind)
        if not (folder / META_FILE).exists():
            return _read_meta_orbax(folder)
        return json.loads((folder / META_FILE).read_text())["meta"]

    def close(self) -> None:
        """Nothing is left pending: every save is complete when it returns."""


def _like(array: np.ndarray, want: Any, name: str, folder: Path) -> Any:
    """`array` placed as `want` is: its shape checked, on its sharding, a key again if it was one."""
    if not isinstance(want, jax.Array):
        return type(want)(array) if isinstance(want, (int, float, bool)) else array
    is_key = jax.dtypes.issubdtype(want.dtype, jax.dtypes.prng_key)
    shape = jax.random.key_data(want).shape if is_key else want.shape
    if array.shape != shape:
        raise InputError(f"checkpoint {folder}: {name} has shape {array.shape}, this model needs {shape}")
    if is_key:
        return jax.random.wrap_key_data(jax.device_put(array, want.sharding), impl=jax.random.key_impl(want))
    array = array.astype(want.dtype, copy=False)
    return jax.make_array_from_callback(shape, want.sharding, lambda index: array[index])


def _orbax_manager(folder: Path):
    import orbax.checkpoint as ocp

    return ocp, ocp.CheckpointManager(folder.parent, options=ocp.CheckpointManagerOptions(read_only=True))


def _restore_orbax(folder: Path, like: Any) -> tuple[Any, dict]:
    """A checkpoint written by orbax (hamnet-jax before issue 14's checkpoint writer)."""
    ocp, mngr = _orbax_manager(folder)
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
    out = mngr.restore(int(folder.name), args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 meta=ocp.args.JsonRestore()))
    mngr.close()
    return out["state"], out["meta"]


def _read_meta_orbax(folder: Path) -> dict:
    ocp, mngr = _orbax_manager(folder)
    meta = mngr.restore(int(folder.name), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    mngr.close()
    return meta
