"""The moving average of the weights (training/weight_averaging.py): the arithmetic, and that
`fit` validates and keeps the average, not the last step's weights."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hamnet_jax.config import config_from_dict
from hamnet_jax.data.batch import random_batch
from hamnet_jax.training.loop import fit
from hamnet_jax.training.weight_averaging import debiased, decay_for, weight_average, weight_average_state


def test_the_debiased_average_is_the_moving_average_of_the_weights_after_each_step():
    decay = 0.8
    tx = optax.chain(optax.sgd(0.1), weight_average(decay))
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5, jnp.bfloat16)}
    state = tx.init(params)
    seen = []
    for step in range(5):
        grads = jax.tree_util.tree_map(lambda p, s=step: jnp.full_like(p, s + 1.0), params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        seen.append(params)
    average = weight_average_state(state)
    assert int(average.count) == 5 and average.average["b"].dtype == jnp.float32  # float32 even for bf16 weights
    got = debiased(jax.device_get(average), decay, params)
    weights = np.array([(1 - decay) * decay ** (4 - i) for i in range(5)])
    for key in params:
        expected = sum(w * np.asarray(p[key], np.float32) for w, p in zip(weights, seen, strict=True)) / weights.sum()
        np.testing.assert_allclose(np.asarray(got[key], np.float32), expected, rtol=1e-2 if key == "b" else 1e-6)
        assert got[key].dtype == params[key].dtype


def test_constant_weights_average_to_themselves_and_no_step_reads_the_weights():
    params = {"w": jnp.arange(3.0)}
    tx = weight_average(0.99)
    state = tx.init(params)
    assert debiased(jax.device_get(state), 0.99, params) is params  # before a step: the weights
    for _ in range(3):
        _, state = tx.update(jax.tree_util.tree_map(jnp.zeros_like, params), state, params)
    np.testing.assert_allclose(debiased(jax.device_get(state), 0.99, params)["w"], [0.0, 1.0, 2.0], rtol=1e-6)


def test_the_horizon_is_in_epochs_and_a_bad_decay_is_refused():
    assert decay_for(1.5, 33) == pytest.approx(1 - 1 / 49.5)
    assert decay_for(2.0, 100) == pytest.approx(0.995)
    with pytest.raises(ValueError, match="decay must be in"):
        weight_average(1.0)
    with pytest.raises(ValueError, match="needs the parameters"):
        weight_average(0.9).update({"w": jnp.zeros(2)}, weight_average(0.9).init({"w": jnp.zeros(2)}))
    with pytest.raises(ValueError, match="weight_average_epochs"):
        config_from_dict({"training": {"weight_average_epochs": -1}})


def _fit(tiny_model_config, epochs: float):
    cfg = config_from_dict({"training": {"num_epochs": 3, "batch_size": 16, "early_stop_patience": 0,
                                         "weight_average_epochs": epochs, "learning_rate": 3e-3}}).training
    train, val = random_batch(tiny_model_config, 64, seed=1), random_batch(tiny_model_config, 32, seed=2)
    return fit(tiny_model_config, cfg, train, val), cfg


def test_fit_validates_and_keeps_the_average(tiny_model_config):
    averaged, cfg = _fit(tiny_model_config, 1.0)
    plain, _ = _fit(tiny_model_config, 0.0)
    # the same steps (same seed, same batches): only what is read differs
    assert [h["train_loss"] for h in averaged.history] == [h["train_loss"] for h in plain.history]
    assert [h["val_mae"] for h in averaged.history] != [h["val_mae"] for h in plain.history]
    state = weight_average_state(averaged.opt_state)
    assert state is not None and weight_average_state(plain.opt_state) is None
    kept = debiased(state, decay_for(1.0, 64 // cfg.batch_size), averaged.params)
    for a, b in zip(jax.tree_util.tree_leaves(kept), jax.tree_util.tree_leaves(averaged.params), strict=True):
        np.testing.assert_array_equal(a, b)  # the result is the average held in the state it ends with
    leaves = zip(jax.tree_util.tree_leaves(averaged.params), jax.tree_util.tree_leaves(plain.params), strict=True)
    assert any(not np.array_equal(a, b) for a, b in leaves)


def test_pruning_with_averaging_asked_for_stays_exactly_sparse(tiny_model_config):
    """A growing mask turns the average off (an average of weights just zeroed is not zero):
    the plan's `weight_averaging=False` (without it the weights kept measured 0.0 sparse)."""
    from hamnet_jax.compression.prune import prune_and_finetune
    from hamnet_jax.config import PruningConfig
    from hamnet_jax.models.hamnet import HAMNet, init_params
    from hamnet_jax.training.fit_options import FitOptions

    train, val = random_batch(tiny_model_config, 64, seed=1), random_batch(tiny_model_config, 32, seed=2)
    params = init_params(HAMNet(tiny_model_config), train, jax.random.key(0))
    training = config_from_dict({"training": {"weight_average_epochs": 1.0}}).training
    pcfg = PruningConfig.from_section({"method": "magnitude", "target_sparsity": 0.5, "finetune_epochs": 2,
                                       "batch_size": 16, "pruning_frequency": 1})
    out = prune_and_finetune(tiny_model_config, params, train, val, pcfg, FitOptions(training=training))
    # zeros counted on the weights themselves: averaged weights would hold tiny non-zeros instead
    assert out.report["sparsity"]["prunable_sparsity"] >= 0.49
