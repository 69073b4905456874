"""Adversarial perturbations of the continuous inputs (standardized units).

Only observed entries of the numeric modalities move (masks multiply every
perturbation); category codes, masks and visit structure are never touched.

* `fgsm` (Goodfellow et al. 2015): x + eps * sign(grad_x loss).
* `pgd` (Madry et al. 2018): random start in the L-inf ball, `steps` signed-gradient
  ascent steps of size `step_size`, projected back onto the ball after each.
* `vat_loss` (Miyato et al. 2019, "Virtual Adversarial Training"): the direction that most
  changes the predictive distribution, found by power iteration on the Gaussian KL
  (no labels needed), scaled to L2 norm eps per subject; the loss is that KL.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from hamnet_jax.data.batch import Batch
from hamnet_jax.transforms.distillation import gaussian_kl

Inputs = dict[str, jax.Array]


def _with_inputs(batch: Batch, inputs: Inputs) -> Batch:
    return batch.replace(inputs=inputs)


def _masked(tree: Inputs, batch: Batch) -> Inputs:
    return {m: tree[m] * batch.feature_masks[m] for m in tree}


def fgsm(loss_of_batch: Callable[[Batch], jax.Array], batch: Batch, epsilon: float) -> Batch:
    """The batch with inputs moved by eps * sign of the loss gradient."""
    grads = jax.grad(lambda x: loss_of_batch(_with_inputs(batch, x)))(batch.inputs)
    step = _masked(jax.tree_util.tree_map(jnp.sign, grads), batch)
    return _with_inputs(batch, jax.tree_util.tree_map(lambda x, s: x + epsilon * s, batch.inputs, step))


def pgd(loss_of_batch: Callable[[Batch], jax.Array], batch: Batch, epsilon: float, key: jax.Array,
        steps: int = 3, step_size: float | None = None) -> Batch:
    """Projected gradient ascent in the L-inf ball of radius eps (masked entries fixed)."""
    alpha = step_size if step_size is not None else 2.5 * epsilon / steps
    keys = jax.random.split(key, len(batch.inputs))
    start = {m: jax.random.uniform(k, batch.inputs[m].shape, minval=-epsilon, maxval=epsilon)
             for k, m in zip(keys, batch.inputs, strict=True)}
    delta = _masked(start, batch)

    def body(_, delta: Inputs) -> Inputs:
        x = jax.tree_util.tree_map(jnp.add, batch.inputs, delta)
        g = jax.grad(lambda x: loss_of_batch(_with_inputs(batch, x)))(x)
        moved = jax.tree_util.tree_map(lambda d, g: jnp.clip(d + alpha * jnp.sign(g), -epsilon, epsilon), delta, g)
        return _masked(moved, batch)

    delta = jax.lax.fori_loop(0, steps, body, delta)
    return _with_inputs(batch, jax.tree_util.tree_map(jnp.add, batch.inputs, delta))


def _unit_per_subject(tree: Inputs) -> Inputs:
    sq = sum(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1) for v in tree.values())
    norm = jnp.sqrt(sq + 1e-12)
    return {m: v / norm.reshape((-1,) + (1,) * (v.ndim - 1)) for m, v in tree.items()}


def vat_loss(predict: Callable[[Batch], dict], batch: Batch, clean: dict, key: jax.Array,
             epsilon: float = 1.0, xi: float = 1e-3, iterations: int = 1) -> jax.Array:
    """KL(clean prediction || prediction at x + r_adv), mean over subjects; `predict` maps a
    batch to the model's outputs, `clean` are its outputs on `batch` (treated as constants)."""
    clean = jax.lax.stop_gradient(clean)
    keys = jax.random.split(key, len(batch.inputs))
    d = _unit_per_subject(_masked({m: jax.random.normal(k, batch.inputs[m].shape)
                                   for k, m in zip(keys, batch.inputs, strict=True)}, batch))

    def divergence(r: Inputs) -> jax.Array:
        x = jax.tree_util.tree_map(jnp.add, batch.inputs, r)
        return gaussian_kl(predict(_with_inputs(batch, x)), clean)

    for _ in range(iterations):
        g = jax.grad(divergence)(jax.tree_util.tree_map(lambda v: xi * v, d))
        d = _unit_per_subject(_masked(jax.lax.stop_gradient(g), batch))
    return divergence(jax.tree_util.tree_map(lambda v: epsilon * v, d))
