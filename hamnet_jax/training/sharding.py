"""Device mesh, logical-axis rules and the shardings of the train state and batches.

One code path serves one CPU, 8 devices and many hosts: the mesh has three axes,

* `data`   — batch split, parameters replicated (data parallel);
* `fsdp`   — batch split *and* parameters + optimizer moments split along `embed`
             (fully sharded data parallel, ZeRO-3 style; XLA inserts the all-gathers);
* `tensor` — feed-forward hidden units and attention heads split (Megatron-style tensor
             parallel);

and rules map the model's logical axis names (`models/logical.py`) onto them. Axes of size
one are free, so data parallel is `{data: -1}`, FSDP `{fsdp: -1}`, data x tensor
`{data: 4, tensor: 2}`. A dimension that a mesh axis does not divide stays replicated
(reported by `sharding_report`), rather than failing on tiny layers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from hamnet_jax.errors import InputError
from hamnet_jax.transforms.select import path_str

MESH_AXES: tuple[str, ...] = ("data", "fsdp", "tensor")
BATCH_AXES: tuple[str, ...] = ("data", "fsdp")
FSDP_MIN_SIZE = 256  # smaller parameters stay replicated under FSDP: gathering them costs more than it saves

# logical axis -> mesh axes (None: replicated)
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("embed_out", None),
    ("features", None),
    ("groups", None),
    ("vocab", None),
    ("conv", None),
)


def mesh_shape(spec: Mapping[str, int] | None, num_devices: int) -> dict[str, int]:
    """Sizes of (data, fsdp, tensor) from a partial spec; one axis may be -1 (the rest)."""
    spec = dict(spec or {"data": -1})
    unknown = sorted(set(spec) - set(MESH_AXES))
    if unknown:
        raise InputError(f"training.mesh: unknown axis {unknown}; expected some of {list(MESH_AXES)}")
    sizes = {a: int(spec.get(a, 1)) for a in MESH_AXES}
    free = [a for a, s in sizes.items() if s == -1]
    if len(free) > 1 or any(s == 0 or s < -1 for s in sizes.values()):
        raise InputError(f"training.mesh: sizes must be positive, with at most one -1; got {spec}")
    fixed = math.prod(s for s in sizes.values() if s != -1)
    if free:
        if num_devices % fixed:
            raise InputError(f"training.mesh: {spec} does not divide the {num_devices} devices")
        sizes[free[0]] = num_devices // fixed
    if math.prod(sizes.values()) != num_devices:
        raise InputError(f"training.mesh: {sizes} uses {math.prod(sizes.values())} devices but "
                         f"{num_devices} are available")
    return sizes


def make_mesh(spec: Mapping[str, int] | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all devices of all processes)."""
    devices = list(devices if devices is not None else jax.devices())
    sizes = mesh_shape(spec, len(devices))
    shape = tuple(sizes[a] for a in MESH_AXES)
    if devices == list(jax.devices()):
        # topology-aware device order on GPU/TPU; Auto axes: XLA's partitioner (GSPMD)
        # places the activations, the model code carries no sharding annotations
        return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def _divisible_spec(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """`spec` with every entry the mesh cannot split evenly replaced by None."""
    out = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=True):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        size = math.prod(mesh.shape[a] for a in names)
        out.append(axes if names and dim % size == 0 else None)
    return PartitionSpec(*out)


def _with_fsdp(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """FSDP shards every parameter of at least FSDP_MIN_SIZE elements: one whose logical
    axes put nothing on `fsdp` (e.g. an input-features x hidden kernel) is split along its
    largest dimension that is free and divisible."""
    size = mesh.shape["fsdp"]
    used = {a for entry in spec for a in ((entry,) if isinstance(entry, str) else entry or ())}
    if size == 1 or "fsdp" in used or math.prod(shape) < FSDP_MIN_SIZE:
        return spec
    free = [i for i, (dim, entry) in enumerate(zip(shape, spec, strict=True)) if entry is None and dim % size == 0]
    if not free:
        return spec
    best = max(free, key=lambda i: shape[i])
    return PartitionSpec(*("fsdp" if i == best else entry for i, entry in enumerate(spec)))


def param_shardings(logical_specs: Any, abstract_params: Any, mesh: Mesh,
                    rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> Any:
    """NamedSharding per parameter from its logical axis names and the rules."""
    def one(spec: PartitionSpec, leaf: Any) -> NamedSharding:
        mesh_spec = nn.logical_to_mesh_axes(tuple(spec), rules) if spec else PartitionSpec()
        mesh_spec = _divisible_spec(mesh_spec, leaf.shape, mesh)
        return NamedSharding(mesh, _with_fsdp(mesh_spec, leaf.shape, mesh))

    return jax.tree_util.tree_map(one, logical_specs, abstract_params,
                                  is_leaf=lambda x: isinstance(x, PartitionSpec))


def state_shardings(abstract_state: Any, params_sharding: Any, mesh: Mesh) -> Any:
    """Shardings of a whole TrainState: optimizer moments (and pruning masks) follow their
    parameter; scalars (step, schedule counts, loss scale) and extra fields are replicated."""
    replicated = NamedSharding(mesh, PartitionSpec())
    opt = optax.tree_map_params(
        abstract_state.tx, lambda _, s: s, abstract_state.opt_state, params_sharding,
        transform_non_params=lambda _: replicated,
    )
    everything = jax.tree_util.tree_map(lambda _: replicated, abstract_state)  # extra fields: teachers, loss scale
    return everything.replace(params=params_sharding, opt_state=opt)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (subject) axis split over data x fsdp; everything else whole."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def batch_divisor(mesh: Mesh) -> int:
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


def process_rows(sharding: NamedSharding, global_rows: int) -> slice:
    """The contiguous rows of a batch-sharded array that this process's devices hold."""
    index_map = sharding.addressable_devices_indices_map((global_rows,))
    starts = [idx[0].start or 0 for idx in index_map.values()]
    stops = [global_rows if idx[0].stop is None else idx[0].stop for idx in index_map.values()]
    return slice(min(starts), max(stops))


def local_rows(rows: np.ndarray, sharding: NamedSharding) -> np.ndarray:
    """The part of a global batch's subject `rows` that this process's devices hold: the
    only rows a process needs to read (every process computes the same global `rows`)."""
    if len(rows) % batch_divisor(sharding.mesh):
        raise InputError(f"batch of {len(rows)} subjects does not split over the {batch_divisor(sharding.mesh)} "
                         f"data x fsdp devices of the mesh {dict(sharding.mesh.shape)}")
    return np.asarray(rows)[process_rows(sharding, len(rows))]


def put_local_rows(local: Any, sharding: NamedSharding, global_rows: int) -> Any:
    """A batch of this process's rows (`local_rows`) as the global arrays of a batch of
    `global_rows`: each process transfers only its own rows."""
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a), (global_rows, *np.shape(a)[1:])),
        local)


def put_global_batch(batch: Any, sharding: NamedSharding) -> Any:
    """A host batch (the same global rows on every process) as global arrays: each process
    transfers only the rows its own devices hold."""
    rows = int(jax.tree_util.tree_leaves(batch)[0].shape[0])
    local = local_rows(np.arange(rows), sharding)
    return put_local_rows(jax.tree_util.tree_map(lambda a: np.asarray(a)[local], batch), sharding, rows)


def sharding_report(params: Any) -> list[dict[str, Any]]:
    """Per parameter: global shape, the shape of one device's shard, and its PartitionSpec."""
    rows = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        shard = leaf.addressable_shards[0].data.shape
        rows.append({"param": path_str(path), "shape": tuple(leaf.shape), "shard_shape": tuple(shard),
                     "spec": str(leaf.sharding.spec) if hasattr(leaf.sharding, "spec") else "-"})
    return rows
