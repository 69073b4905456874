"""Post-hoc calibration: the interval scale and the outcome temperature."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from hamnet_jax.evaluation.metrics import auroc, classification_metrics
from hamnet_jax.inference.calibration import (Calibration, calibrate_std_scale, fit_calibration,
                                              fit_logit_temperature, tempered_probability)
from hamnet_jax.models.uncertainty import Z90


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def overconfident(n: int, true_temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z / T) and the over-confident probabilities sigmoid(z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, n)
    labels = (rng.random(n) < sigmoid(z / true_temperature)).astype(np.float64)
    return labels, sigmoid(z)


def test_the_temperature_is_the_no_intercept_logistic_fit_on_the_log_odds():
    labels, p = overconfident(4000, 2.5, seed=0)
    fitted = fit_logit_temperature(labels, p)
    z = np.log(p) - np.log1p(-p)
    reference = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-10, max_iter=1000)
    slope = reference.fit(z[:, None], labels).coef_[0, 0]
    assert fitted == pytest.approx(1.0 / slope, rel=1e-4)
    assert fitted == pytest.approx(2.5, rel=0.1)  # and it recovers the world's temperature


def test_temperature_scaling_lowers_held_out_log_loss_and_keeps_the_ranking():
    labels, p = overconfident(3000, 2.0, seed=1)
    held_labels, held_p = overconfident(3000, 2.0, seed=2)
    temperature = fit_logit_temperature(labels, p)
    tempered, _ = tempered_probability(held_p, None, temperature)
    before, after = classification_metrics(held_labels, held_p), classification_metrics(held_labels, tempered)
    assert after["log_loss"] < before["log_loss"] - 0.05 and after["brier"] < before["brier"]
    assert auroc(held_labels, tempered) == pytest.approx(auroc(held_labels, held_p), abs=1e-12)


def test_a_calibrated_head_keeps_temperature_one_and_degenerate_labels_fit_nothing():
    labels, p = overconfident(4000, 1.0, seed=3)
    assert fit_logit_temperature(labels, p) == pytest.approx(1.0, abs=0.08)
    assert fit_logit_temperature(np.ones(10), np.full(10, 0.7)) == 1.0  # one class
    assert fit_logit_temperature(np.full(5, np.nan), np.full(5, 0.7)) == 1.0  # no label
    mixed = np.array([0.0, 1.0, np.nan, 1.0])  # NaN labels are skipped, not fitted
    assert np.isfinite(fit_logit_temperature(mixed, np.array([0.2, 0.9, 0.5, 0.6])))


def test_the_spread_follows_the_map_by_its_derivative_in_numpy_and_jax():
    p, std = np.array([0.02, 0.3, 0.5, 0.97]), np.array([0.01, 0.05, 0.1, 0.02])
    tempered, spread = tempered_probability(p, std, 1.7)
    eps = 1e-6
    up, _ = tempered_probability(p + eps, None, 1.7)
    down, _ = tempered_probability(p - eps, None, 1.7)
    np.testing.assert_allclose(spread, std * (up - down) / (2 * eps), rtol=1e-5)
    np.testing.assert_allclose(tempered[2], 0.5)  # the map fixes 1/2 and moves the rest toward it
    assert (np.abs(tempered - 0.5) < np.abs(p - 0.5))[[0, 1, 3]].all()
    traced, traced_spread = tempered_probability(jnp.asarray(p), jnp.asarray(std), 1.7, jnp)
    np.testing.assert_allclose(np.asarray(traced), tempered, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(traced_spread), spread, rtol=1e-5)
    same, same_std = tempered_probability(p, std, 1.0)
    assert same is p and same_std is std


def test_fit_calibration_fits_each_head_it_finds():
    rng = np.random.default_rng(4)
    y = rng.normal(size=2000)
    pred = {"prediction": np.zeros(2000), "total_std": np.full(2000, 0.5)}
    scale = fit_calibration(y, None, pred).std_scale
    assert scale == pytest.approx(np.quantile(np.abs(y), 0.9) / 0.5 / Z90)
    assert calibrate_std_scale(np.append(y, np.nan), np.zeros(2001), np.full(2001, 0.5)) == pytest.approx(scale)
    labels, p = overconfident(2000, 3.0, seed=5)
    both = fit_calibration(y, labels, {**pred, "outcome_probability": p})
    assert both.std_scale == pytest.approx(scale) and both.logit_temperature == fit_logit_temperature(labels, p) > 1.5
    assert fit_calibration(None, labels, {"outcome_probability": p}).std_scale == 1.0


def test_calibration_round_trips_and_rejects_bad_values():
    calibration = Calibration(1.2, 0.8)
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    assert Calibration.from_dict({"std_scale": 1.3}) == Calibration(1.3, 1.0)  # a run from before temperatures
    for bad in ({"std_scale": 0.0}, {"logit_temperature": float("nan")}, {"logit_temperature": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Calibration(**bad)
