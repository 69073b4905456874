"""Train state and step on a mesh: `eval_shape` -> shardings -> `jit(init, out_shardings)`,
and the train step jitted once with in/out shardings and the state's buffers donated.

The same setup runs on one device (a 1x1x1 mesh), on all local devices and on many hosts;
the dropout key is derived inside the step from a base key and the step number, so every
process passes the same small host values.

Given the shapes of the first batch (`step_batch`), the step compiles on a background thread
from the state's abstract shapes while the initial state is computed: on this 2-core CPU the
standard tier's step takes ~20 s to compile and the state's init ~10 s (a seeded draw per
parameter), and the two compiles run side by side instead of one after the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hamnet_jax.platform.background_compile import Compiling
from hamnet_jax.data.batch import Batch
from hamnet_jax.models.hamnet import HAMNet, param_logical_axes
from hamnet_jax.training.plan import DEFAULT_PLAN, Plan
from hamnet_jax.training.precision import PrecisionPolicy
from hamnet_jax.training.sharding import (
    DEFAULT_RULES, batch_sharding, local_rows, param_shardings, put_global_batch, put_local_rows, state_shardings,
)
from hamnet_jax.training.state import OptimizerConfig, TrainState, state_init_fn
from hamnet_jax.training.steps import step_compiler_options, train_step_fn


@dataclasses.dataclass
class ShardedSetup:
    mesh: Mesh
    state_sharding: Any
    batch_sharding: NamedSharding
    step: Callable[[TrainState, Batch, np.ndarray], tuple[TrainState, dict]]
    base_key: np.ndarray  # raw key data; the step folds in the step number
    compiling: Compiling | None = None  # the step compiling ahead (setup_sharded_training's step_batch)

    def put_batch(self, batch: Batch) -> Batch:
        return put_global_batch(batch, self.batch_sharding)

    def read_batch(self, source: Any, rows: np.ndarray, visits: int) -> Batch:
        """Global batch `rows` of `source` (a `Batch` or `CohortBatches`) cut to `visits` slots,
        on the devices: this process reads and transfers only the rows its devices hold."""
        local = source.take(local_rows(rows, self.batch_sharding)).trim_visits(visits)
        return put_local_rows(local, self.batch_sharding, len(rows))

    def train_step(self, state: TrainState, batch: Batch, step_number: int) -> tuple[TrainState, dict]:
        """One step on a host batch (every process passes the same global rows)."""
        return self.device_step(state, self.put_batch(batch), step_number)

    def device_step(self, state: TrainState, batch: Batch, step_number: int) -> tuple[TrainState, dict]:
        """One step on a batch already on the devices (`read_batch`)."""
        if self.compiling is not None:  # a call now would compile the step a second time
            self.compiling.wait()
            self.compiling = None
        return self.step(state, batch, self.base_key, np.int32(step_number))


def _logical_for(tree: Any, model_logical: Any) -> Any:
    """Logical axes for a params tree: the model's where a subtree has the model's
    structure (e.g. a distilled student inside {"student", "projections"}), none elsewhere."""
    if jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(
            model_logical, is_leaf=lambda x: isinstance(x, PartitionSpec)):
        return model_logical
    if isinstance(tree, dict):
        return {k: _logical_for(v, model_logical) for k, v in tree.items()}
    return jax.tree_util.tree_map(lambda _: PartitionSpec(), tree)


def setup_sharded_training(
    model: HAMNet, example: Batch, opt_cfg: OptimizerConfig, policy: PrecisionPolicy, mesh: Mesh,
    seed: int, loss: str = "gaussian_nll", class_weight: float = 1.0, accumulation_steps: int = 1,
    rules: Sequence[tuple[str, Any]] = DEFAULT_RULES, plan: Plan = DEFAULT_PLAN, dropout_rng: str = "threefry",
    step_batch: Batch | None = None,
) -> tuple[TrainState, ShardedSetup]:
    """The initial (sharded) state and the jitted step. Params come from `fold_in(seed, 0)`
    (or the plan's), dropout keys from `step_dropout_key`. `step_batch`: a batch (host arrays
    or `jax.ShapeDtypeStruct`s) of the global shapes the step will run: the step then
    compiles ahead, beside the init (module docstring)."""
    init = state_init_fn(model, example, opt_cfg, policy, plan.wrap_apply, plan.wrap_tx, plan.state_cls,
                         plan.state_fields)
    start = plan.init_params
    key = jax.random.key(seed)
    abstract = jax.eval_shape(init, jax.random.fold_in(key, 0), start)
    if mesh.size == 1:  # one device: every array is whole; skip tracing the model's axis names
        logical = jax.tree_util.tree_map(lambda _: PartitionSpec(), abstract.params)
    else:
        logical = _logical_for(abstract.params, param_logical_axes(model, example))
    params_sh = param_shardings(logical, abstract.params, mesh, rules)
    state_sh = state_shardings(abstract, params_sh, mesh)
    replicated = NamedSharding(mesh, PartitionSpec())

    def step(state: TrainState, batch: Batch, base_key: jax.Array, number: jax.Array):
        dropout_key = step_dropout_key(base_key, number, dropout_rng)
        return train_step_fn(state, batch, dropout_key, loss, class_weight, accumulation_steps,
                             objective=plan.objective, after_update=plan.after_update)

    bsh = batch_sharding(mesh)
    jitted = jax.jit(step, in_shardings=(state_sh, bsh, replicated, replicated),
                     out_shardings=(state_sh, replicated), donate_argnums=(0,),
                     compiler_options=step_compiler_options(mesh.devices.flat))
    base_key = np.asarray(jax.random.key_data(key))
    compiling = None
    if step_batch is not None:
        spec = lambda a, sharding=None: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding,
                                                             weak_type=getattr(a, "weak_type", False))
        # the state and the batch arrive on the devices; the key and the step number as numpy
        args = (jax.tree_util.tree_map(spec, abstract, state_sh),
                jax.tree_util.tree_map(lambda a: spec(a, bsh), step_batch), spec(base_key),
                spec(np.int32(0)))
        compiling = Compiling(lambda: jitted.lower(*args), "train-step")
    state = jax.jit(lambda k, p: init(jax.random.fold_in(jax.random.wrap_key_data(k), 0), p),
                    out_shardings=state_sh, in_shardings=(replicated, replicated))(base_key, start)
    return state, ShardedSetup(mesh, state_sh, bsh, jitted, base_key, compiling)


DROPOUT_RNGS = ("threefry", "rbg", "unsafe_rbg")


def step_dropout_key(base_key: jax.Array, number: jax.Array, dropout_rng: str = "threefry") -> jax.Array:
    """Step `number`'s dropout key: `fold_in(fold_in(seed, 1), number)` (threefry), or with
    `dropout_rng` "rbg" / "unsafe_rbg" a key of that implementation seeded from it, whose
    random bits (the dropout masks) come from XLA's RngBitGenerator instead of threefry
    rounds (JAX's `jax.random` docs: rbg is faster on accelerators; the same seed and step
    give the same masks on the same backend)."""
    if dropout_rng not in DROPOUT_RNGS:
        raise ValueError(f"training.dropout_rng: {dropout_rng!r} is not one of {list(DROPOUT_RNGS)}")
    key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(base_key), 1), number)
    if dropout_rng == "threefry":
        return key
    return jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl=dropout_rng)


def host_params(params: Any) -> Any:
    """Parameters as host numpy arrays, gathered from every process's shards."""
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return jax.device_get(params)
    return multihost_utils.process_allgather(params, tiled=True)
