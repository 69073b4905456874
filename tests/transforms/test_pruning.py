"""Pruning transforms: mask properties (hypothesis), the optax wrapper, schedules, criteria."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamnet_jax.transforms.masks import apply_masks, prunable, sparsity_report
from hamnet_jax.transforms.pruning import (
    Criterion, PruningSchedule, accumulate_scores, masks_from_scores, prune_optax, pruning_masks, saliency_masks,
)


def random_tree(seed: int, shapes: list[tuple[int, ...]]) -> dict:
    rng = np.random.default_rng(seed)
    return {f"layer_{i}": {"kernel": jnp.asarray(rng.standard_normal(s), jnp.float32),
                           "bias": jnp.asarray(rng.standard_normal(s[-1:]), jnp.float32)}
            for i, s in enumerate(shapes)}


shapes_st = st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(shapes=shapes_st, sparsity=st.floats(0.0, 0.99), seed=st.integers(0, 10_000))
def test_layer_masks_are_boolean_with_requested_sparsity(shapes, sparsity, seed):
    params = random_tree(seed, shapes)
    masks = masks_from_scores(jax.tree_util.tree_map(jnp.abs, params), jnp.float32(sparsity), prunable(params))
    for name, layer in masks.items():
        assert layer["kernel"].dtype == jnp.bool_ and layer["kernel"].shape == params[name]["kernel"].shape
        pruned = int((~layer["kernel"]).sum())
        assert abs(pruned - sparsity * layer["kernel"].size) <= 1  # within one element per layer
        assert bool(layer["bias"].all())  # biases are never pruned by default
        # the pruned weights are the smallest in magnitude
        w = np.abs(np.asarray(params[name]["kernel"]))
        if 0 < pruned < w.size:
            assert w[~np.asarray(layer["kernel"])].max() <= w[np.asarray(layer["kernel"])].min()


@settings(max_examples=30, deadline=None)
@given(shapes=shapes_st, sparsity=st.floats(0.0, 0.99), seed=st.integers(0, 10_000))
def test_global_masks_hit_the_total(shapes, sparsity, seed):
    params = random_tree(seed, shapes)
    masks = masks_from_scores(jax.tree_util.tree_map(jnp.abs, params), jnp.float32(sparsity), prunable(params),
                              "global")
    total = sum(p["kernel"].size for p in params.values())
    pruned = sum(int((~m["kernel"]).sum()) for m in masks.values())
    assert abs(pruned - sparsity * total) <= 1


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), target=st.floats(0.1, 0.9),
       kind=st.sampled_from(["one_shot", "linear", "polynomial"]),
       criterion=st.sampled_from([c.value for c in Criterion]))
def test_masked_weights_stay_exactly_zero_for_50_steps(seed, target, kind, criterion):
    params = random_tree(seed, [(6, 5), (5, 3)])
    schedule = PruningSchedule(kind, target, start_step=2, end_step=30, frequency=4)
    tx = prune_optax(optax.adamw(0.05, weight_decay=0.01), schedule, criterion)
    state = tx.init(params)
    step = jax.jit(tx.update)
    key = jax.random.key(seed)
    for i in range(50):
        grads = jax.tree_util.tree_map(lambda p, i=i: jax.random.normal(jax.random.fold_in(key, i), p.shape), params)
        updates, state = step(grads, state, params)
        params = optax.apply_updates(params, updates)
        masks = pruning_masks(state)
        for p, m in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(masks), strict=True):
            assert bool(jnp.all(jnp.where(m, True, p == 0.0)))
    for name, m in pruning_masks(state).items():
        assert abs(int((~m["kernel"]).sum()) - target * params[name]["kernel"].size) <= 1
    report = sparsity_report(params)
    assert report["prunable_sparsity"] >= target - 0.1


def test_schedules_reach_target_and_only_grow():
    for kind in ("linear", "polynomial"):
        s = PruningSchedule(kind, 0.8, start_step=10, end_step=110, frequency=10)
        values = [float(s.sparsity(jnp.int32(t))) for t in range(0, 130)]
        assert values[0] == 0.0 and values[-1] == pytest.approx(0.8)
        assert all(b >= a - 1e-7 for a, b in zip(values, values[1:], strict=False))
        updates = [t for t in range(130) if bool(s.is_update_step(jnp.int32(t)))]
        assert updates == list(range(10, 111, 10))
    same_step = PruningSchedule("polynomial", 0.6, 5, 5)  # start == end: the target at once
    assert float(same_step.sparsity(jnp.int32(5))) == pytest.approx(0.6) and bool(same_step.is_update_step(5))
    poly = PruningSchedule("polynomial", 0.8, 0, 100)
    lin = PruningSchedule("linear", 0.8, 0, 100)
    assert float(poly.sparsity(jnp.int32(20))) > float(lin.sparsity(jnp.int32(20)))  # prunes early, then slows
    with pytest.raises(ValueError, match="kind"):
        PruningSchedule("cubic")
    with pytest.raises(ValueError, match="target"):
        PruningSchedule("linear", 1.0)


def test_movement_scores_accumulate_minus_w_times_g():
    params = {"k": {"kernel": jnp.asarray([[1.0, -2.0], [0.5, 3.0]])}}
    grads = {"k": {"kernel": jnp.asarray([[1.0, 1.0], [-1.0, 0.0]])}}
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    twice = accumulate_scores("movement", accumulate_scores("movement", zeros, params, grads), params, grads)
    np.testing.assert_allclose(twice["k"]["kernel"], [[-2.0, 4.0], [1.0, 0.0]])
    taylor = accumulate_scores("taylor", zeros, params, grads)
    np.testing.assert_allclose(taylor["k"]["kernel"], [[1.0, 4.0], [0.25, 0.0]])


def test_saliency_masks_keep_the_most_sensitive_connections():
    params = {"a": {"kernel": jnp.ones((2, 2))}, "b": {"kernel": jnp.ones((2, 2))}}
    grads = {"a": {"kernel": jnp.asarray([[4.0, 3.0], [2.0, 1.0]])}, "b": {"kernel": jnp.full((2, 2), 0.5)}}
    masks = saliency_masks(params, grads, 0.5)  # global: all of b goes
    assert bool(masks["a"]["kernel"].all()) and not bool(masks["b"]["kernel"].any())


def test_apply_masks_and_report_count_real_zeros():
    params = {"d": {"kernel": jnp.arange(1.0, 7.0).reshape(2, 3), "bias": jnp.zeros(3)}}
    masks = {"d": {"kernel": jnp.asarray([[True, False, True], [False, False, True]]), "bias": jnp.ones(3, bool)}}
    pruned = apply_masks(params, masks)
    report = sparsity_report(pruned)
    assert report["layers"]["d/kernel"]["zeros"] == 3 and report["prunable_sparsity"] == 0.5
    assert report["total_sparsity"] == pytest.approx(6 / 9)  # the zero biases count in the total
    with pytest.raises(ValueError, match="PruningState"):
        pruning_masks(optax.adam(1e-3).init(params))
