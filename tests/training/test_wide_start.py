"""`tier: auto` and the fitted start of the wide path: the linear fits against scikit-learn,
the untrained network equal to them, and the auto tier's resolution."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.linear_model import LogisticRegression, RidgeCV

from hamnet_jax.config import config_from_dict
from hamnet_jax.config.run_config import AUTO_SMALL_SUBJECTS, resolve_auto_tier
from hamnet_jax.data.batch import random_batch
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, init_params, wide_features
from hamnet_jax.training.wide_start import (fitted_wide_start, freeze_wide, logistic_cv, logistic_fit, logistic_lbfgs,
                                            ridge_loo)


def _regression_data(rng: np.random.Generator, n: int = 120, p: int = 15) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, p)) * rng.uniform(0.5, 3.0, p) + rng.normal(0, 2, p)
    return x, x @ rng.standard_normal(p) * 0.3 + 1.5 + rng.standard_normal(n)


def test_ridge_picks_the_penalty_and_weights_of_leave_one_out_ridge():
    x, y = _regression_data(np.random.default_rng(0))
    alphas = np.logspace(-2, 4, 13)
    w, b, loo = ridge_loo(x, y, alphas)
    ref = RidgeCV(alphas=alphas, fit_intercept=True).fit(x, y)  # exact LOO (its default)
    np.testing.assert_allclose(w, ref.coef_, rtol=1e-6, atol=1e-8)
    assert b == pytest.approx(ref.intercept_, rel=1e-6)
    assert loo == pytest.approx(ref.best_score_ * -1, rel=1e-6)  # RidgeCV's score is -MSE


def test_logistic_regression_matches_scikit_learn_at_a_penalty():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 8))
    y = (rng.random(300) < 1 / (1 + np.exp(-(x @ rng.standard_normal(8) - 0.5)))).astype(float)
    ref = LogisticRegression(C=1 / 4.0, tol=1e-10, max_iter=10_000).fit(x, y)  # intercept not penalized
    for beta in (logistic_fit(x, y, penalty=4.0), logistic_lbfgs(x, y, penalty=4.0)):  # Newton, and L-BFGS
        np.testing.assert_allclose(beta[:-1], ref.coef_[0], atol=1e-5)
        assert beta[-1] == pytest.approx(ref.intercept_[0], abs=1e-5)
    _, _, penalty = logistic_cv(x, y, penalties=np.array([1e-2, 1.0, 1e6]))
    assert penalty != 1e6  # a penalty that zeroes every weight loses when the outcome depends on x


@pytest.fixture(scope="module")
def wide_model():
    config = HAMNetConfig.from_tier("base", clinical_dim=6, imaging_dim=0, genetic_dim=0, lifestyle_dim=3,
                                    lifestyle_cardinalities=(2, 3), wide=True, classification=True)
    batch = random_batch(config, 64, 3)
    x = np.asarray(wide_features(config, batch), np.float64)
    rng = np.random.default_rng(2)
    targets = (x @ rng.standard_normal(x.shape[1]) * 0.5 + rng.standard_normal(64)).astype(np.float32)
    labels = (rng.random(64) < 1 / (1 + np.exp(-x[:, 0] * 2))).astype(np.float32)
    batch = dataclasses.replace(batch, targets=targets, labels=labels)
    return config, batch, x, init_params(HAMNet(config), batch, jax.random.key(0))


def test_the_fitted_start_makes_the_untrained_network_the_linear_models(wide_model):
    config, batch, x, params = wide_model
    start = fitted_wide_start(config, params, batch)
    out, _ = jax.jit(HAMNet(config).apply)({"params": start}, batch)
    w, b, loo = ridge_loo(x, np.asarray(batch.targets, np.float64))
    np.testing.assert_allclose(out["mean"], x @ w + b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["log_var"], np.log(loo), atol=1e-3)  # the ridge's LOO residual variance
    lw, lb, _ = logistic_cv(x, np.asarray(batch.labels, np.float64))
    np.testing.assert_allclose(out["logits"], x @ lw + lb, rtol=1e-4, atol=1e-4)
    for name in ("fusion", "temporal", "head_mlp"):  # the deep part keeps its seeded init
        jax.tree_util.tree_map(np.testing.assert_array_equal, start[name], params[name])


def test_the_fitted_wide_path_stays_fixed_in_training(wide_model):
    config, batch, _, params = wide_model
    tx = freeze_wide(optax.adamw(0.1, weight_decay=0.1))
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert not any(np.asarray(u).any() for u in jax.tree_util.tree_leaves(updates["wide"]))
    assert all(np.asarray(u).all() for u in jax.tree_util.tree_leaves(updates["mean_head"]))


def test_the_fitted_start_needs_the_wide_path(wide_model):
    config, batch, _, params = wide_model
    with pytest.raises(InputError, match="model.wide: true"):
        fitted_wide_start(config.replace(wide=False), params, batch)


def test_auto_tier_is_standard_with_a_fitted_linear_start_on_small_cohorts():
    small = resolve_auto_tier(config_from_dict({}), AUTO_SMALL_SUBJECTS - 1)
    assert small.model == {"tier": "standard", "wide": True} and small.training.wide_start == "fitted"
    large = resolve_auto_tier(config_from_dict({}), AUTO_SMALL_SUBJECTS)
    assert large.model == {"tier": "standard"} and large.training.wide_start == "zeros"
    # what the user set wins; an explicit tier is left as it is
    no_wide = resolve_auto_tier(config_from_dict({"model": {"wide": False}}), 10)
    assert no_wide.model["wide"] is False and no_wide.training.wide_start == "zeros"
    zeros = resolve_auto_tier(config_from_dict({"training": {"wide_start": "zeros"}}), 10)
    assert zeros.model["wide"] is True and zeros.training.wide_start == "zeros"
    base = config_from_dict({"model": {"tier": "base"}})
    assert resolve_auto_tier(base, 10) is base
    with pytest.raises(InputError, match="model.tier: auto"):
        config_from_dict({}).model_config()
