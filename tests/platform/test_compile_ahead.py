"""Programs compiled ahead on a background thread are the ones the later call runs: the call
compiles nothing (counted by JAX's backend-compile events)."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import monitoring

from hamnet_jax.data.batch import random_batch
from hamnet_jax.inference.predictor import compile_predict_ahead, predict_batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, init_params, param_shapes

COMPILES: list[str] = []
monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: COMPILES.append(name) if name.endswith("backend_compile_duration") else None)


def test_predictions_compiled_ahead_from_parameter_shapes_compile_nothing_later():
    config = HAMNetConfig.from_tier("base", embed_dim=16, num_heads=2, clinical_dim=5, imaging_dim=12, genetic_dim=8,
                                    lifestyle_dim=2, lifestyle_cardinalities=(3,), imaging_group_size=4,
                                    genetic_group_size=4)
    batch = random_batch(config, 40, 3)
    params = jax.device_get(init_params(HAMNet(config), jax.tree_util.tree_map(jnp.asarray, batch), jax.random.key(0)))
    before = len(COMPILES)
    compile_predict_ahead(config, param_shapes(HAMNet(config), batch.take(np.arange(1))), batch, num_samples=3,
                          seed=1, visit_slots=4).wait()
    assert len(COMPILES) > before  # the MC-dropout program compiled on the thread
    ahead = len(COMPILES)
    out = predict_batch(config, params, batch, 50.0, 10.0, num_samples=3, seed=1, visit_slots=4)
    assert len(COMPILES) == ahead, "predict_batch compiled again: the program compiled ahead was another one"
    assert out["prediction"].shape == (40,) and np.isfinite(out["total_std"]).all()


def test_train_step_compiled_ahead_beside_the_init_is_the_step_that_runs():
    from hamnet_jax.training.precision import resolve_policy
    from hamnet_jax.training.sharded_setup import setup_sharded_training
    from hamnet_jax.training.sharding import make_mesh
    from hamnet_jax.training.state import OptimizerConfig

    config = HAMNetConfig.from_tier("base", embed_dim=16, num_heads=2, clinical_dim=5, imaging_dim=12, genetic_dim=8,
                                    lifestyle_dim=2, lifestyle_cardinalities=(3,), imaging_group_size=4,
                                    genetic_group_size=4)
    batch = random_batch(config, 8, 3)
    state, setup = setup_sharded_training(HAMNet(config), batch.take(np.arange(2)), OptimizerConfig(),
                                          resolve_policy("fp32"), make_mesh(None), 0, step_batch=batch)
    assert setup.compiling is not None
    setup.compiling.wait()
    ahead = len(COMPILES)
    for number in range(2):  # the init's state, then the step's own output
        state, metrics = setup.device_step(state, setup.read_batch(batch, np.arange(8), 3), number)
    jax.block_until_ready(metrics)
    assert len(COMPILES) == ahead, "the first steps compiled again: the step compiled ahead was another program"
    assert np.isfinite(float(metrics["loss"]))


def test_mask_program_compiled_for_compile_speed_draws_the_same_masks():
    from hamnet_jax.models.mc_dropout import MASK_PROGRAM_OPTIONS
    from hamnet_jax.models.uncertainty import mc_masks

    config = HAMNetConfig.from_tier("base", embed_dim=16, num_heads=2, clinical_dim=5, imaging_dim=12, genetic_dim=8,
                                    lifestyle_dim=2, lifestyle_cardinalities=(3,), imaging_group_size=4,
                                    genetic_group_size=4, dropout=0.3)
    batch = jax.tree_util.tree_map(jnp.asarray, random_batch(config, 1, 3))
    params = init_params(HAMNet(config), batch, jax.random.key(0))
    draw = lambda p, b: mc_masks(HAMNet(config), p, b, jax.random.key(7), 5)
    plain = jax.jit(draw)(params, batch)
    cheap = jax.jit(draw, compiler_options=MASK_PROGRAM_OPTIONS)(params, batch)
    assert len(plain) == len(cheap) > 0
    for a, b in zip(plain, cheap, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_train_step_compiles_with_the_cpu_step_options(monkeypatch):
    """`training.steps.CPU_STEP_OPTIONS` reach the train step's compile on CPU devices (a bogus
    option added to them makes that compile fail, naming it), and only there."""
    from hamnet_jax.training import steps
    from hamnet_jax.training.precision import resolve_policy
    from hamnet_jax.training.sharded_setup import setup_sharded_training
    from hamnet_jax.training.sharding import make_mesh
    from hamnet_jax.training.state import OptimizerConfig

    cpu = jax.default_backend() == "cpu"
    assert steps.step_compiler_options(jax.devices()) == ({"xla_cpu_multi_thread_eigen": False} if cpu else None)
    assert steps.step_compiler_options([types.SimpleNamespace(platform="gpu")]) is None
    if not cpu:
        pytest.skip("the CPU options apply to CPU devices only")
    monkeypatch.setitem(steps.CPU_STEP_OPTIONS, "xla_no_such_option_here", True)
    config = HAMNetConfig.from_tier("base", embed_dim=8, num_heads=2, clinical_dim=3, imaging_dim=0, genetic_dim=0,
                                    lifestyle_dim=0)
    batch = random_batch(config, 4, 2)
    state, setup = setup_sharded_training(HAMNet(config), batch.take(np.arange(2)), OptimizerConfig(),
                                          resolve_policy("fp32"), make_mesh(None), 0)
    with pytest.raises(Exception, match="xla_no_such_option_here"):
        setup.device_step(state, setup.read_batch(batch, np.arange(4), 2), 0)
