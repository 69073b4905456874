"""Unstructured pruning as pure functions and an optax wrapper.

* Criteria give a score per weight; the lowest-scored weights are pruned:
  `magnitude` |w| (Han et al. 2015), `saliency` |w * g| (first-order saliency; computed
  at initialization and ranked globally it is SNIP, Lee et al. 2019), `taylor` sum of
  (w * g)^2 over steps (Molchanov et al. 2019), `movement` sum of -w * g over
  fine-tuning steps (Sanh et al. 2020: weights moving towards zero go first).
* Schedules: one-shot, linear and polynomial (Zhu & Gupta 2017) sparsity between a
  start and an end step, updated every `frequency` steps.
* `prune_optax(inner, schedule, criterion)` wraps any optax optimizer (as jaxpruner's
  `wrap_optax`): masks and score accumulators live in the optimizer state (so they
  checkpoint and shard with it), mask updates run under `lax.cond`, gradients of pruned
  weights are zeroed before the inner optimizer, and the final update sets pruned weights
  to exactly zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from hamnet_jax.transforms.masks import PRUNABLE_RULES, full_masks, prunable
from hamnet_jax.transforms.select import Pattern


class Criterion(StrEnum):
    MAGNITUDE = "magnitude"
    SALIENCY = "saliency"
    TAYLOR = "taylor"
    MOVEMENT = "movement"


ACCUMULATING = (Criterion.SALIENCY, Criterion.TAYLOR, Criterion.MOVEMENT)


def accumulate_scores(criterion: str, scores: Any, params: Any, grads: Any) -> Any:
    """Add one step's evidence to the running scores (magnitude needs none)."""
    step = {
        Criterion.SALIENCY: lambda p, g: jnp.abs(p * g),
        Criterion.TAYLOR: lambda p, g: jnp.square(p * g),
        Criterion.MOVEMENT: lambda p, g: -p * g,
    }
    if criterion not in step:
        return scores
    return jax.tree_util.tree_map(lambda s, p, g: s + step[criterion](p.astype(jnp.float32), g.astype(jnp.float32)),
                                  scores, params, grads)


def criterion_scores(criterion: str, params: Any, accumulated: Any) -> Any:
    """Score per weight: higher is kept."""
    if criterion == Criterion.MAGNITUDE:
        return jax.tree_util.tree_map(lambda p: jnp.abs(p.astype(jnp.float32)), params)
    if criterion in ACCUMULATING:
        return accumulated
    raise ValueError(f"unknown pruning criterion {criterion!r}; expected one of {[c.value for c in Criterion]}")


def prune_count(size: int, sparsity: jax.Array) -> jax.Array:
    """How many of `size` weights a sparsity prunes: round(sparsity * size)."""
    return jnp.round(jnp.clip(sparsity, 0.0, 1.0) * size).astype(jnp.int32)


def lowest_k_mask(scores: jax.Array, k: jax.Array) -> jax.Array:
    """Keep-mask pruning exactly the `k` lowest scores (ties broken by position)."""
    flat = scores.ravel()
    rank = jnp.argsort(jnp.argsort(flat, stable=True), stable=True)
    return (rank >= k).reshape(scores.shape)


def masks_from_scores(scores: Any, sparsity: jax.Array, selected: Any, scope: str = "layer") -> Any:
    """Keep-masks pruning `sparsity` of each selected layer (`layer`) or of all selected
    weights together (`global`); unselected leaves are kept whole."""
    if scope == "layer":
        return jax.tree_util.tree_map(
            lambda s, sel: lowest_k_mask(s, prune_count(s.size, sparsity)) if sel else jnp.ones(s.shape, bool),
            scores, selected)
    if scope != "global":
        raise ValueError(f"pruning scope must be 'layer' or 'global', got {scope!r}")
    leaves, treedef = jax.tree_util.tree_flatten(scores)
    chosen = [i for i, sel in enumerate(jax.tree_util.tree_leaves(selected)) if sel]
    if not chosen:
        return jax.tree_util.tree_map(lambda s: jnp.ones(s.shape, bool), scores)
    flat = jnp.concatenate([leaves[i].ravel() for i in chosen])
    keep = lowest_k_mask(flat, prune_count(flat.size, sparsity))
    out = [jnp.ones(s.shape, bool) for s in leaves]
    offset = 0
    for i in chosen:
        out[i] = keep[offset:offset + leaves[i].size].reshape(leaves[i].shape)
        offset += leaves[i].size
    return jax.tree_util.tree_unflatten(treedef, out)


def saliency_masks(params: Any, grads: Any, sparsity: float, selected: Any | None = None,
                   scope: str = "global") -> Any:
    """Masks from |w * g| of one gradient. At initialization with global scope this is SNIP
    (Lee et al. 2019): prune before training the connections the loss is least sensitive to."""
    selected = prunable(params) if selected is None else selected
    return masks_from_scores(accumulate_scores(Criterion.SALIENCY, jax.tree_util.tree_map(
        lambda p: jnp.zeros(p.shape, jnp.float32), params), params, grads), jnp.float32(sparsity), selected, scope)


@dataclasses.dataclass(frozen=True)
class PruningSchedule:
    """Target sparsity as a function of the optimizer step.

    `one_shot`: `target` at `start_step`. `linear`: from `initial` to `target` between
    `start_step` and `end_step`. `polynomial`: Zhu & Gupta (2017),
    s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^power. Masks are recomputed every
    `frequency` steps in [start_step, end_step] and at `end_step`.
    """

    kind: str = "polynomial"
    target: float = 0.5
    start_step: int = 0
    end_step: int = 0
    frequency: int = 1
    initial: float = 0.0
    power: float = 3.0

    def __post_init__(self) -> None:
        if self.kind not in ("one_shot", "linear", "polynomial"):
            raise ValueError(f"pruning schedule kind {self.kind!r}: expected one_shot, linear or polynomial")
        for name in ("target", "initial"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"pruning schedule {name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.frequency < 1 or self.start_step < 0 or self.end_step < 0:
            raise ValueError("pruning schedule: frequency must be >= 1 and steps >= 0")
        if self.kind != "one_shot" and self.end_step < self.start_step:
            raise ValueError(f"pruning schedule: end_step {self.end_step} before start_step {self.start_step}")

    def sparsity(self, step: jax.Array) -> jax.Array:
        if self.kind == "one_shot":
            return jnp.float32(self.target)
        span = max(self.end_step - self.start_step, 1)
        t = jnp.where(step >= self.end_step, 1.0, jnp.clip((step - self.start_step) / span, 0.0, 1.0))
        if self.kind == "linear":
            return jnp.float32(self.initial + (self.target - self.initial) * t)
        return jnp.float32(self.target + (self.initial - self.target) * (1.0 - t) ** self.power)

    def is_update_step(self, step: jax.Array) -> jax.Array:
        if self.kind == "one_shot":
            return step == self.start_step
        inside = (step >= self.start_step) & (step <= self.end_step)
        return inside & (((step - self.start_step) % self.frequency == 0) | (step == self.end_step))


class PruningState(NamedTuple):
    count: jax.Array
    masks: Any
    scores: Any
    inner_state: Any


def prune_optax(
    inner: optax.GradientTransformation,
    schedule: PruningSchedule | None,
    criterion: str = Criterion.MAGNITUDE,
    rules: Sequence[tuple[Pattern, bool]] = PRUNABLE_RULES,
    scope: str = "layer",
    initial_masks: Any | None = None,
) -> optax.GradientTransformation:
    """`inner` that keeps pruned weights at exactly zero and grows sparsity on `schedule`
    (None: masks stay `initial_masks`). Must see raw gradients: wrap the whole chain."""
    criterion = Criterion(criterion)

    def init(params: Any) -> PruningState:
        masks = full_masks(params) if initial_masks is None else initial_masks
        scores = (jax.tree_util.tree_map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
                  if criterion in ACCUMULATING else ())
        return PruningState(jnp.zeros((), jnp.int32), masks, scores, inner.init(params))

    def update(updates: Any, state: PruningState, params: Any | None = None) -> tuple[Any, PruningState]:
        if params is None:
            raise ValueError("prune_optax needs params in update(): pass them to tx.update")
        scores = accumulate_scores(criterion, state.scores, params, updates)
        masks = state.masks
        if schedule is not None:
            def recompute() -> Any:
                # pruned weights stay pruned: sparsity only grows
                ranked = jax.tree_util.tree_map(lambda s, m: jnp.where(m, s, -jnp.inf),
                                                criterion_scores(criterion, params, scores), state.masks)
                return masks_from_scores(ranked, schedule.sparsity(state.count), prunable(params, rules), scope)

            masks = jax.lax.cond(schedule.is_update_step(state.count), recompute, lambda: state.masks)
        grads = jax.tree_util.tree_map(lambda g, m: jnp.where(m, g, jnp.zeros_like(g)), updates, masks)
        inner_updates, inner_state = inner.update(grads, state.inner_state, params)
        final = jax.tree_util.tree_map(lambda u, p, m: jnp.where(m, u, -p).astype(u.dtype), inner_updates, params,
                                       masks)
        return final, PruningState(state.count + 1, masks, scores, inner_state)

    return optax.GradientTransformation(init, update)


def pruning_masks(state: Any) -> Any:
    """The masks inside a `prune_optax` state (searched through optax chains/wrappers)."""
    found = optax.tree_utils.tree_get_all_with_path(state, PruningState.__name__)
    if not found:
        raise ValueError("optimizer state holds no PruningState: was the optimizer built with prune_optax?")
    return found[0][1].masks
