"""Precision policies, loss scaling, gradient accumulation, attention kernels, remat and
dynamic batching (one device; sharding is in test_sharding.py)."""

from __future__ import annotations

import types

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hamnet_jax.config import TrainingConfig
from hamnet_jax.data.batch import random_batch
from hamnet_jax.errors import InputError
from hamnet_jax.models.attention import blockwise_attention, dot_product_attention, naive_attention
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, init_params
from hamnet_jax.training.dynamic_batching import (
    compiled_memory_bytes, epoch_batches, largest_batch_within_budget, padding_fraction,
)
from hamnet_jax.training.loop import fit
from hamnet_jax.training.precision import DynamicLossScale, resolve_policy
from hamnet_jax.training.state import OptimizerConfig, create_train_state
from hamnet_jax.training.steps import gradients, loss_fn, train_step
from hamnet_jax.transforms.select import path_str

# clinical + lifestyle only: the fusion and temporal attention blocks without the token
# encoders, so each compile takes seconds, not tens of seconds, on the CI machine
CFG = HAMNetConfig.from_tier("base", clinical_dim=12, imaging_dim=0, genetic_dim=0, lifestyle_dim=4,
                             lifestyle_cardinalities=(3,), dropout=0.0)


# softmax is shift-invariant, so these parameters' gradients are exactly 0 in exact
# arithmetic; Adam turns rounding noise in them into +-lr steps that change no output
SHIFT_INVARIANT = ("key/bias", "score/bias")


def _max_diff(a, b, skip: tuple[str, ...] = ()) -> float:
    pairs = zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b), strict=True)
    return max(float(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)).max())
               for (path, x), y in pairs if not path_str(path).endswith(skip))


def test_accumulating_four_micro_batches_equals_one_big_batch():
    batch = random_batch(CFG, 32, 3)
    opt = OptimizerConfig(learning_rate=1e-3, warmup_steps=1, total_steps=10)
    big = create_train_state(HAMNet(CFG), batch, jax.random.key(0), opt)
    acc = create_train_state(HAMNet(CFG), batch, jax.random.key(0), opt)
    for i in range(3):
        b = random_batch(CFG, 32, 3, seed=i)
        big, m_big = train_step(big, b, jax.random.key(i))
        acc, m_acc = train_step(acc, b, jax.random.key(i), accumulation_steps=4)
        assert abs(float(m_big["loss"]) - float(m_acc["loss"])) < 1e-5
    assert int(acc.step) == 3
    assert _max_diff(big.params, acc.params, SHIFT_INVARIANT) < 1e-6
    grads = jax.jit(gradients, static_argnums=(0, 4))
    objective = functools.partial(loss_fn, loss="gaussian_nll", class_weight=1.0)
    g1, _ = grads(objective, big, batch, jax.random.key(0), 1)
    g4, _ = grads(objective, big, batch, jax.random.key(0), 4)
    scale = max(float(jnp.abs(g).max()) for g in jax.tree_util.tree_leaves(g1))
    assert _max_diff(g1, g4) < 1e-5 * scale


def test_accumulation_needs_equal_micro_batches():
    batch = random_batch(CFG, 30, 3)
    state = create_train_state(HAMNet(CFG), batch, jax.random.key(0), OptimizerConfig())
    with pytest.raises(ValueError, match="does not split into 4 equal micro-batches"):
        train_step(state, batch, jax.random.key(0), accumulation_steps=4)


def test_fp16_overflow_step_is_skipped_and_scale_halves():
    policy = resolve_policy("fp16")
    assert policy.loss_scaling and policy.compute_dtype == "float16" and policy.param_dtype == "float32"
    model = HAMNet(CFG.replace(dtype=policy.compute_dtype))
    batch = random_batch(CFG, 16, 3)
    state = create_train_state(model, batch, jax.random.key(0), OptimizerConfig(warmup_steps=1), policy)
    for i in range(4):  # let the scale settle to a finite step
        state, m = train_step(state, batch, jax.random.key(i))
    assert float(m["skipped"]) == 0.0
    before, step, scale = jax.device_get(state.params), int(state.step), float(state.loss_scale.scale)
    overflow = batch.replace(targets=np.full_like(batch.targets, 1e30))
    state, m = train_step(state, overflow, jax.random.key(9))
    assert float(m["skipped"]) == 1.0
    assert int(state.step) == step
    assert float(state.loss_scale.scale) == scale / 2
    assert _max_diff(before, state.params) == 0.0


def test_loss_scale_grows_after_a_period_of_finite_steps():
    scale = DynamicLossScale.create(8.0, period=2)
    scale = scale.adjust(jnp.asarray(True))
    assert float(scale.scale) == 8.0
    scale = scale.adjust(jnp.asarray(True))
    assert float(scale.scale) == 16.0 and int(scale.good_steps) == 0
    assert float(scale.adjust(jnp.asarray(False)).scale) == 8.0


@pytest.mark.parametrize("mode, compute", [("fp32", "float32"), ("bf16", "bfloat16"), ("mixed", "float32")])
def test_policies_on_cpu(mode, compute):
    policy = resolve_policy(mode, platform="cpu")
    assert policy.compute_dtype == compute and not policy.loss_scaling


def test_mixed_picks_bf16_on_tpu():
    assert resolve_policy("mixed", platform="tpu").compute_dtype == "bfloat16"


@pytest.mark.parametrize("t, block", [(70, 16), (9, 4), (5, 64)])
def test_attention_kernels_are_exact(t, block):
    keys = jax.random.split(jax.random.key(t), 3)
    q, k, v = (jax.random.normal(key, (3, t, 2, 8)) for key in keys)
    mask = (jnp.arange(t)[None] < jnp.asarray([t, t // 2, 1])[:, None]).astype(jnp.float32)
    ref = naive_attention(q, k, v, mask)
    assert float(jnp.abs(blockwise_attention(q, k, v, mask, block) - ref).max()) < 1e-5
    assert float(jnp.abs(dot_product_attention(q, k, v, mask) - ref).max()) < 1e-5


@pytest.mark.parametrize("change", [dict(attention="blockwise", attention_block_size=2),
                                    dict(attention="dot_product"), dict(remat_policy="full"),
                                    dict(remat_policy="save_dots", remat_blocks=("temporal",))])
def test_execution_options_keep_outputs_and_gradients(change):
    batch = random_batch(CFG, 8, 5)
    params = init_params(HAMNet(CFG), batch, jax.random.key(0))

    def run(cfg):
        f = lambda p: HAMNet(cfg).apply({"params": p}, batch)[0]["mean"].sum()
        return jax.jit(jax.value_and_grad(f))(params)

    (ref_v, ref_g), (v, g) = run(CFG), run(CFG.replace(**change))
    assert abs(float(ref_v) - float(v)) < 1e-4
    assert _max_diff(ref_g, g) < 1e-4


def _lowered_step(cfg: HAMNetConfig, visits: int, batch_size: int = 2):
    batch = random_batch(cfg, batch_size, visits)
    state = create_train_state(HAMNet(cfg), batch, jax.random.key(0), OptimizerConfig())
    return train_step.lower(state, batch, jax.random.key(1))


LONG_HISTORY = HAMNetConfig.from_tier("base", clinical_dim=8, imaging_dim=0, genetic_dim=0, lifestyle_dim=0,
                                      temporal_layers=2, dropout=0.0)


def test_blockwise_attention_cuts_temporary_memory_at_long_histories():
    naive = _lowered_step(LONG_HISTORY, 512).compile().memory_analysis().temp_size_in_bytes
    blockwise = _lowered_step(LONG_HISTORY.replace(attention="blockwise"), 512).compile()
    assert blockwise.memory_analysis().temp_size_in_bytes < 0.8 * naive


def test_remat_policy_reaches_the_compiled_step():
    """jax.checkpoint marks the recomputation with optimization barriers (XLA:CPU later
    drops them and CSEs the recompute away, so CPU memory does not move; GPU/TPU keep them)."""
    plain = _lowered_step(LONG_HISTORY, 4).as_text()
    remat = _lowered_step(LONG_HISTORY.replace(remat_policy="full"), 4).as_text()
    assert "optimization_barrier" not in plain
    assert remat.count("optimization_barrier") >= LONG_HISTORY.temporal_layers


def test_trimming_padded_visit_slots_keeps_predictions():
    batch = random_batch(CFG, 16, 6)
    keep = np.flatnonzero(batch.visit_counts() <= 3)
    sub = batch.take(keep)
    params = init_params(HAMNet(CFG), batch, jax.random.key(0))
    full = HAMNet(CFG).apply({"params": params}, sub)[0]["mean"]
    trimmed = HAMNet(CFG).apply({"params": params}, sub.trim_visits(3))[0]["mean"]
    assert float(jnp.abs(full - trimmed).max()) < 1e-5


def test_visit_buckets_cut_padding_and_cover_distinct_rows():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 17, size=1000)
    plain = epoch_batches(counts, 64, np.random.default_rng(1), 16, bucket=False)
    bucketed = epoch_batches(counts, 64, np.random.default_rng(1), 16, bucket=True)
    assert len(plain) == len(bucketed) == 1000 // 64
    rows = np.concatenate([r for r, _ in bucketed])
    assert len(np.unique(rows)) == len(rows) == 64 * (1000 // 64)
    assert all(counts[r].max() <= v for r, v in bucketed)
    assert {v for _, v in bucketed} <= {2, 4, 6, 8, 10, 12, 14, 16}
    assert padding_fraction(counts, bucketed) < 0.5 * padding_fraction(counts, plain)


def test_largest_batch_within_budget_bisects():
    fake = lambda b: types.SimpleNamespace(memory_analysis=lambda: types.SimpleNamespace(
        argument_size_in_bytes=1000, output_size_in_bytes=0, temp_size_in_bytes=100 * b, alias_size_in_bytes=0))
    size, measured = largest_batch_within_budget(fake, budget_bytes=1000 + 100 * 45, max_batch=256, multiple_of=4)
    assert size == 44
    assert all(b % 4 == 0 for b in measured)
    assert compiled_memory_bytes(fake(3)) == 1300
    with pytest.raises(MemoryError, match="over the"):
        largest_batch_within_budget(fake, budget_bytes=10, max_batch=256)


@pytest.mark.slow  # every option composed, ~100 s of compiles cold; each option alone is tested above
def test_fit_with_every_training_option():
    cfg = TrainingConfig(batch_size=8, num_epochs=2, precision_mode="bf16", gradient_accumulation_steps=2,
                         gradient_checkpointing="full", memory_efficient_attention="blockwise",
                         bucket_by_visits=True, memory_budget_mb=64, eval_batch_size=64, early_stop_patience=0)
    result = fit(CFG, cfg, random_batch(CFG, 48, 2, seed=1), random_batch(CFG, 16, 2, seed=2))
    assert len(result.history) == 2
    assert result.batch_size in (2, 4, 8)
    assert all(np.isfinite(r["val_loss"]) for r in result.history)
    assert result.history[0]["padding_fraction"] < 0.5
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(result.params))


def test_fit_errors_name_the_training_key():
    data = random_batch(CFG, 16, 2, seed=1)
    with pytest.raises(InputError, match=r"training.memory_budget_mb=0.001: even a batch of 1 needs"):
        fit(CFG, TrainingConfig(batch_size=8, num_epochs=1, memory_budget_mb=0.001), data, data)
    with pytest.raises(InputError, match=r"training.batch_size=3 .* smaller than 4"):
        fit(CFG, TrainingConfig(batch_size=3, num_epochs=1, gradient_accumulation_steps=4), data, data)


@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg"])
def test_rbg_dropout_keys_give_seeded_masks_of_the_keep_rate(impl):
    from hamnet_jax.models.layers import keep_mask
    from hamnet_jax.training.sharded_setup import step_dropout_key

    base = np.asarray(jax.random.key_data(jax.random.key(7)))
    masks = jax.jit(lambda number, rng: keep_mask(jax.random.fold_in(step_dropout_key(base, number, rng), 3), 0.9,
                                                  (400, 250)), static_argnums=1)
    first = np.asarray(masks(jnp.int32(5), impl))
    assert jax.random.key_impl(step_dropout_key(base, jnp.int32(5), impl)) == impl
    np.testing.assert_array_equal(first, np.asarray(masks(jnp.int32(5), impl)))  # same seed and step: same masks
    assert (first != np.asarray(masks(jnp.int32(6), impl))).mean() > 0.1  # the next step: other masks
    assert (first != np.asarray(masks(jnp.int32(5), "threefry"))).mean() > 0.1
    assert first.mean() == pytest.approx(0.9, abs=0.005)
    with pytest.raises(ValueError, match="training.dropout_rng: 'philox' is not one of"):
        step_dropout_key(base, jnp.int32(0), "philox")
    with pytest.raises(ValueError, match="dropout_rng"):
        TrainingConfig(dropout_rng="philox")
