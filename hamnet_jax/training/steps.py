"""`train_step` and `eval_step`: short, pure, one job each.

`train_step` covers every precision policy and gradient accumulation: with
`accumulation_steps=k` the batch is cut into k micro-batches whose gradients are summed
by a `lax.scan` and averaged before one optimizer update, so the step equals one step on
the whole batch while only a micro-batch's activations are alive at a time. With a loss
scale in the state (fp16), gradients are unscaled, and a step with non-finite gradients
leaves params and optimizer state unchanged while the scale halves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from hamnet_jax.data.batch import Batch
from hamnet_jax.transforms.losses import task_loss, task_metrics
from hamnet_jax.training.precision import all_finite
from hamnet_jax.training.state import TrainState


LossFn = Callable[[Any, TrainState, Batch, jax.Array], tuple[jax.Array, dict]]

# XLA:CPU hands the matmuls YNNPACK does not take (the attention's batched per-head products)
# to Eigen, multi-threaded by default: each goes to Eigen's thread pool while the step's
# executor waits for it (the profile shows idle gaps around them). Single-threaded, each runs
# on an executor thread while the other core takes independent operations: a small gain for
# the standard tier on this 2-core CPU, within its noise (experiments/bench_train.py's "fp32,
# multi-threaded Eigen" row is the A/B).
CPU_STEP_OPTIONS: dict[str, Any] = {"xla_cpu_multi_thread_eigen": False}


def step_compiler_options(devices: Any) -> dict[str, Any] | None:
    """The train step's XLA compile options on `devices` (an iterable of jax devices): the
    CPU ones when every device is a CPU, else none."""
    return dict(CPU_STEP_OPTIONS) if all(d.platform == "cpu" for d in devices) else None


def loss_fn(params: Any, state: TrainState, batch: Batch, key: jax.Array, loss: str = "gaussian_nll",
            class_weight: float = 1.0) -> tuple[jax.Array, dict]:
    """The task loss of one stochastic forward pass; the default objective of `train_step_fn`."""
    outputs, _ = state.apply_fn({"params": params}, batch, deterministic=False, rngs={"dropout": key})
    total = task_loss(outputs, batch.targets, batch.labels, loss, class_weight).mean()
    return total, {"loss": total, **task_metrics(outputs, batch.targets, batch.labels)}


def micro_batches(batch: Batch, k: int) -> Batch:
    """[k * m, ...] -> [k, m, ...] taking every k-th row into a micro-batch: the leading
    (batch-sharded) axis keeps its sharding, so every micro-batch is spread over all devices."""
    def split(a: jax.Array) -> jax.Array:
        if a.shape[0] % k:
            raise ValueError(f"batch of {a.shape[0]} rows does not split into {k} equal micro-batches")
        return jnp.swapaxes(a.reshape((a.shape[0] // k, k) + a.shape[1:]), 0, 1)

    return jax.tree_util.tree_map(split, batch)


def gradients(objective: LossFn, state: TrainState, batch: Batch, key: jax.Array,
              accumulation_steps: int) -> tuple[Any, dict]:
    """Mean gradient of `objective` (loss-scaled when the state has a loss scale) and its
    metrics over `accumulation_steps` micro-batches."""
    def scaled(params: Any, st: TrainState, b: Batch, k: jax.Array) -> tuple[jax.Array, dict]:
        total, metrics = objective(params, st, b, k)
        return (total if st.loss_scale is None else st.loss_scale.scale_loss(total)), metrics

    grad_fn = jax.grad(scaled, has_aux=True)
    if accumulation_steps == 1:
        return grad_fn(state.params, state, batch, key)

    def body(carry, inputs):
        i, micro = inputs
        g, m = grad_fn(state.params, state, micro, jax.random.fold_in(key, i))
        return jax.tree_util.tree_map(jnp.add, carry, (g, m)), None

    micro = micro_batches(batch, accumulation_steps)
    first = jax.tree_util.tree_map(lambda a: a[0], micro)
    shapes = jax.eval_shape(grad_fn, state.params, state, first, key)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, jnp.float32), shapes)
    total, _ = jax.lax.scan(body, zeros, (jnp.arange(accumulation_steps), micro))
    grads, metrics = jax.tree_util.tree_map(lambda x: x / accumulation_steps, total)
    grads = jax.tree_util.tree_map(lambda g, p: g.astype(p.dtype), grads, state.params)
    return grads, metrics


def train_step_fn(state: TrainState, batch: Batch, key: jax.Array, loss: str = "gaussian_nll",
                  class_weight: float = 1.0, accumulation_steps: int = 1, objective: LossFn | None = None,
                  after_update: Callable[[TrainState], TrainState] | None = None) -> tuple[TrainState, dict]:
    """One optimizer step (pure; jit it, with shardings when training on a mesh).

    `objective(params, state, batch, key) -> (loss, metrics)` replaces the task loss (the
    distillation and regularization objectives plug in here, so they get accumulation and
    fp16 loss scaling too); `after_update(state)` runs after the update (an EMA teacher)."""
    objective = objective or functools.partial(loss_fn, loss=loss, class_weight=class_weight)
    grads, metrics = gradients(objective, state, batch, key, accumulation_steps)
    if state.loss_scale is None:
        metrics["grad_norm"] = optax.tree.norm(grads)
        new = state.apply_gradients(grads=grads)
    else:
        grads = state.loss_scale.unscale(grads)
        finite = all_finite(grads)
        updated = state.apply_gradients(grads=grads)
        kept = jax.tree_util.tree_map(lambda n, old: jnp.where(finite, n, old), updated, state)
        metrics.update(grad_norm=optax.tree.norm(grads), loss_scale=state.loss_scale.scale,
                       skipped=(~finite).astype(jnp.float32))
        new = kept.replace(loss_scale=state.loss_scale.adjust(finite))
    return (after_update(new) if after_update else new), metrics


train_step = functools.partial(
    jax.jit, static_argnames=("loss", "class_weight", "accumulation_steps", "objective", "after_update"),
    donate_argnums=(0,))(train_step_fn)
train_step.__doc__ = "Jitted `train_step_fn` on the default device(s); `key` seeds dropout."


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def eval_step(apply_fn: Any, params: Any, batch: Batch) -> dict:
    """Deterministic forward pass: the model's outputs (mean, log_var[, logits])."""
    outputs, _ = apply_fn({"params": params}, batch, deterministic=True)
    return outputs
