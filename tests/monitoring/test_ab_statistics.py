"""A/B statistics against statsmodels / scipy on fixed data, and the sequential test's
error rates under peeking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hamnet_jax.errors import InputError
from hamnet_jax.monitoring.ab_statistics import (SequentialTest, cuped, msprt, power, sample_ratio_mismatch,
                                                 sample_size, simulate_sequential, two_proportion_test, welch_test)

sm_weightstats = pytest.importorskip("statsmodels.stats.weightstats")
sm_proportion = pytest.importorskip("statsmodels.stats.proportion")
sm_power = pytest.importorskip("statsmodels.stats.power")

RNG = np.random.default_rng(7)
A = RNG.normal(10.0, 2.0, 180)
B = RNG.normal(10.6, 3.0, 240)


def test_welch_agrees_with_statsmodels():
    ours = welch_test(A, B)
    t, p, df = sm_weightstats.ttest_ind(B, A, usevar="unequal")
    low, high = sm_weightstats.CompareMeans.from_data(B, A).tconfint_diff(alpha=0.05, usevar="unequal")
    assert ours["statistic"] == pytest.approx(t, rel=1e-10) and ours["p_value"] == pytest.approx(p, rel=1e-9)
    assert ours["df"] == pytest.approx(df, rel=1e-10)
    assert (ours["ci_low"], ours["ci_high"]) == pytest.approx((low, high), rel=1e-9)
    assert ours["difference"] == pytest.approx(B.mean() - A.mean()) and ours["significant"] == (p < 0.05)


def test_two_proportions_agree_with_statsmodels():
    ours = two_proportion_test(118, 1000, 151, 1040)
    z, p = sm_proportion.proportions_ztest([151, 118], [1040, 1000])
    low, high = sm_proportion.confint_proportions_2indep(151, 1040, 118, 1000, method="wald", compare="diff")
    assert ours["statistic"] == pytest.approx(z, rel=1e-10) and ours["p_value"] == pytest.approx(p, rel=1e-9)
    assert (ours["ci_low"], ours["ci_high"]) == pytest.approx((low, high), rel=1e-9)
    with pytest.raises(InputError, match="arm B: need 0 <= successes <= n"):
        two_proportion_test(1, 10, 12, 10)


def test_power_and_sample_size_agree_with_statsmodels():
    solver = sm_power.NormalIndPower()
    for effect, std, ratio in ((0.5, 2.0, 1.0), (1.0, 4.0, 2.0), (0.2, 1.0, 0.5)):
        size = sample_size(effect, std, alpha=0.05, power=0.8, ratio=ratio)
        expected = solver.solve_power(effect_size=effect / std, alpha=0.05, power=0.8, ratio=ratio)
        assert abs(size["n_a"] - math.ceil(expected)) <= 1
        ours = power(effect, std, size["n_a"], size["n_b"])
        assert ours == pytest.approx(solver.power(effect / std, size["n_a"], 0.05, ratio=size["n_b"] / size["n_a"]),
                                     rel=1e-6)
        assert ours >= 0.8


def test_sample_ratio_mismatch_flags_a_broken_split():
    fine = sample_ratio_mismatch([5000, 5080], [0.5, 0.5])
    broken = sample_ratio_mismatch([5000, 5400], [0.5, 0.5])
    chi2 = 2 * 200**2 / 5200
    assert broken["statistic"] == pytest.approx(chi2) and broken["mismatch"] and not fine["mismatch"]
    assert sample_ratio_mismatch([900, 100], [0.9, 0.1])["p_value"] == pytest.approx(1.0)
    with pytest.raises(InputError, match="2 counts for 3 ratios"):
        sample_ratio_mismatch([1, 2], [1, 1, 1])


def test_the_sequential_test_keeps_alpha_under_peeking_and_has_power():
    null = simulate_sequential(0.0, experiments=1000, peek_every=100, max_observations=10000, alpha=0.05)
    assert null["rejection_rate"] <= 0.05
    assert null["naive_peeking_rejection_rate"] > 0.2  # peeking at a fixed-horizon test does not keep alpha
    shifted = simulate_sequential(0.1, experiments=1000, peek_every=100, max_observations=10000, alpha=0.05)
    assert shifted["rejection_rate"] > 0.9


def test_the_sequential_test_matches_its_vectorized_form_and_keeps_its_minimum():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 400), rng.normal(0.3, 1, 400)
    test = SequentialTest(tau=0.1)
    seen = [test.update(a[:n], b[:n])["p_value"] for n in range(50, 401, 50)]
    assert seen == sorted(seen, reverse=True) and test.stopped_at is not None and seen[-1] <= 0.05
    single = msprt(a, b, tau=0.1)
    assert single["p_value"] == pytest.approx(min(1.0, math.exp(-single["log_likelihood_ratio"])))
    with pytest.raises(InputError, match="tau"):
        msprt(a, b, tau=0.0)


def test_cuped_reduces_variance_without_biasing_the_difference():
    rng = np.random.default_rng(11)
    n = 4000
    pre = rng.normal(50, 10, n)
    arm = rng.integers(0, 2, n)
    y = pre + rng.normal(0, 4, n) + 1.0 * arm
    out = cuped(y, pre, arm)
    assert out["theta"] == pytest.approx(np.polyfit(pre, y, 1)[0], rel=1e-9)
    assert out["variance_reduction"] == pytest.approx(1 - 16 / (100 + 16 + 0.25), abs=0.03)
    raw, adjusted = welch_test(y[arm == 0], y[arm == 1]), welch_test(out["a"], out["b"])
    assert adjusted["difference"] == pytest.approx(1.0, abs=0.3)
    assert adjusted["ci_high"] - adjusted["ci_low"] < 0.5 * (raw["ci_high"] - raw["ci_low"])
    with pytest.raises(InputError, match="arm must be 0 \\(A\\) or 1 \\(B\\)"):
        cuped(y[:3], pre[:3], [0, 1, 2])
