"""A/B test statistics: fixed-horizon tests, an always-valid sequential test, a
sample-ratio-mismatch check, power and sample size, and CUPED.

    welch_test(a, b)                       difference of means, Welch's t (scipy)
    two_proportion_test(xa, na, xb, nb)    difference of rates, pooled two-proportion z
    msprt(a, b, tau)                       mixture SPRT (Johari et al. 2017, "Peeking at A/B
                                           tests"): an always-valid p-value, so users may look
                                           after every observation without inflating alpha
    sample_ratio_mismatch(counts, ratios)  chi-square goodness of fit of the arm sizes (scipy)
    sample_size / power                    per-arm size for a difference, the power of a size
    cuped(y, x, arm)                       variance reduction with a pre-period covariate
                                           (Deng et al. 2013)

Every function takes plain arrays and returns a dict of floats, so results are JSON. The
fixed-horizon tests call scipy; tests check them (and the z-test, power and size, which
are short closed forms here) against statsmodels on fixed data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from hamnet_jax.errors import InputError


def _sample(name: str, values: Sequence[float] | np.ndarray, at_least: int = 2) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size < at_least:
        raise InputError(f"{name}: need at least {at_least} observations, got {x.size}")
    if not np.isfinite(x).all():
        raise InputError(f"{name}: observation {int(np.argmin(np.isfinite(x)))} is not finite")
    return x


def _z(alpha: float, two_sided: bool) -> float:
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be in (0, 1), got {alpha}")
    return float(stats.norm.ppf(1 - alpha / 2 if two_sided else 1 - alpha))


def welch_test(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> dict[str, float]:
    """B minus A: the difference of means, Welch's t-test (unequal variances), its
    two-sided p-value and the (1 - alpha) confidence interval."""
    xa, xb = _sample("arm A", a), _sample("arm B", b)
    result = stats.ttest_ind(xb, xa, equal_var=False)
    ci = result.confidence_interval(1 - alpha)
    return {"mean_a": float(xa.mean()), "mean_b": float(xb.mean()), "difference": float(xb.mean() - xa.mean()),
            "relative_difference": float(xb.mean() / xa.mean() - 1) if xa.mean() else math.nan,
            "statistic": float(result.statistic), "df": float(result.df), "p_value": float(result.pvalue),
            "ci_low": float(ci.low), "ci_high": float(ci.high), "n_a": int(xa.size), "n_b": int(xb.size),
            "significant": bool(result.pvalue < alpha)}


def two_proportion_test(successes_a: int, n_a: int, successes_b: int, n_b: int,
                        alpha: float = 0.05) -> dict[str, float]:
    """B minus A: the difference of rates, the pooled two-proportion z-test (two-sided) and
    an unpooled Wald confidence interval."""
    for name, x, n in (("arm A", successes_a, n_a), ("arm B", successes_b, n_b)):
        if n < 1 or not 0 <= x <= n:
            raise InputError(f"{name}: need 0 <= successes <= n and n >= 1, got {x} of {n}")
    pa, pb = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (pb - pa) / se_pooled if se_pooled > 0 else 0.0
    p_value = float(2 * stats.norm.sf(abs(z)))
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    half = _z(alpha, True) * se
    return {"rate_a": pa, "rate_b": pb, "difference": pb - pa, "statistic": z, "p_value": p_value,
            "ci_low": pb - pa - half, "ci_high": pb - pa + half, "n_a": n_a, "n_b": n_b,
            "significant": bool(p_value < alpha)}


def msprt(a: Sequence[float], b: Sequence[float], tau: float, alpha: float = 0.05,
          variance: float | None = None) -> dict[str, float]:
    """Mixture SPRT for B minus A with a normal mixing distribution N(0, tau^2) over the
    difference (Johari, Pekelis, Walsh 2017). With n_a, n_b observations the difference of
    means has variance V = s^2 (1/n_a + 1/n_b) (s^2: `variance`, else the pooled sample
    variance: a plug-in that is accurate once each arm has tens of observations), and

        Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

    The always-valid p-value is min(1, 1 / Lambda) (a caller that peeks keeps the running
    minimum: `SequentialTest` does); reject when Lambda >= 1 / alpha. `tau` is the scale of
    the differences one expects (a fraction of the metric's standard deviation)."""
    if tau <= 0:
        raise InputError(f"msprt: tau (the mixing scale) must be > 0, got {tau}")
    xa, xb = _sample("arm A", a), _sample("arm B", b)
    if variance is None:
        variance = float(((xa.size - 1) * xa.var(ddof=1) + (xb.size - 1) * xb.var(ddof=1)) / (xa.size + xb.size - 2))
    v = max(variance, 1e-300) * (1 / xa.size + 1 / xb.size)
    d = float(xb.mean() - xa.mean())
    log_lambda = float(msprt_log_lr(d, v, tau))
    p_value = float(min(1.0, math.exp(-log_lambda)))
    return {"difference": d, "log_likelihood_ratio": log_lambda, "p_value": p_value,
            "significant": bool(log_lambda >= math.log(1 / alpha)), "n_a": int(xa.size), "n_b": int(xb.size)}


def msprt_log_lr(difference: np.ndarray | float, variance_of_difference: np.ndarray | float,
                 tau: float) -> np.ndarray:
    """log Lambda of the normal-mixture SPRT, elementwise (simulations vectorize it)."""
    d, v = np.asarray(difference, dtype=np.float64), np.asarray(variance_of_difference, dtype=np.float64)
    return 0.5 * np.log(v / (v + tau**2)) + tau**2 * d**2 / (2 * v * (v + tau**2))


def simulate_sequential(effect: float, experiments: int = 1000, peek_every: int = 100, max_observations: int = 10000,
                        tau: float = 0.1, alpha: float = 0.05, seed: int = 0) -> dict[str, float]:
    """Monte-Carlo of peeking: `experiments` A/B tests on unit-variance normal outcomes
    (B shifted by `effect`), observations assigned alternately, the mSPRT (plug-in pooled
    variance) checked after every `peek_every` observations up to `max_observations`.
    Returns the rejection rate (the false-positive rate when effect = 0, the power
    otherwise), the mean observations at stopping among rejections, and for contrast the
    rejection rate of a fixed-horizon z-test checked at the same peeks (what peeking
    does to a test that is not always valid)."""
    rng = np.random.default_rng(seed)
    per_arm = max_observations // 2
    a = rng.standard_normal((experiments, per_arm))
    b = rng.standard_normal((experiments, per_arm)) + effect
    looks = np.arange(peek_every // 2, per_arm + 1, peek_every // 2)
    ca, cb = np.cumsum(a, axis=1)[:, looks - 1], np.cumsum(b, axis=1)[:, looks - 1]
    qa, qb = np.cumsum(a * a, axis=1)[:, looks - 1], np.cumsum(b * b, axis=1)[:, looks - 1]
    n = looks[None, :].astype(np.float64)
    ma, mb = ca / n, cb / n
    pooled = ((qa - n * ma**2) + (qb - n * mb**2)) / (2 * n - 2)
    log_lr = msprt_log_lr(mb - ma, pooled * 2 / n, tau)
    crossed = log_lr >= math.log(1 / alpha)
    rejected = crossed.any(axis=1)
    first = np.where(rejected, crossed.argmax(axis=1), -1)
    stops = 2 * looks[first[rejected]]
    naive = (np.abs(mb - ma) / np.sqrt(pooled * 2 / n) >= _z(alpha, True)).any(axis=1)
    return {"effect": effect, "experiments": experiments, "peeks": int(looks.size), "rejection_rate":
            float(rejected.mean()), "mean_observations_at_stop": float(stops.mean()) if stops.size else math.nan,
            "naive_peeking_rejection_rate": float(naive.mean())}


class SequentialTest:
    """An mSPRT a user may peek at: `update(a, b)` with everything observed so far returns
    the always-valid p-value (the running minimum) and whether to stop."""

    def __init__(self, tau: float, alpha: float = 0.05) -> None:
        self.tau, self.alpha, self.p_value, self.stopped_at = tau, alpha, 1.0, None

    def update(self, a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
        result = msprt(a, b, self.tau, self.alpha)
        self.p_value = min(self.p_value, result["p_value"])
        if self.p_value <= self.alpha and self.stopped_at is None:
            self.stopped_at = result["n_a"] + result["n_b"]
        return {**result, "p_value": self.p_value, "significant": self.p_value <= self.alpha}


def sample_ratio_mismatch(counts: Sequence[int], ratios: Sequence[float], threshold: float = 1e-3
                          ) -> dict[str, float]:
    """Chi-square test of the observed arm sizes against the configured split; a p-value
    below `threshold` (1e-3, the usual SRM alarm) flags a broken assignment."""
    observed = np.asarray(counts, dtype=np.float64)
    weights = np.asarray(ratios, dtype=np.float64)
    if observed.shape != weights.shape or observed.size < 2:
        raise InputError(f"sample ratio mismatch: {observed.size} counts for {weights.size} ratios (need >= 2 arms)")
    if (weights <= 0).any():
        raise InputError(f"sample ratio mismatch: every ratio must be > 0, got {list(weights)}")
    expected = weights / weights.sum() * observed.sum()
    result = stats.chisquare(observed, expected)
    return {"statistic": float(result.statistic), "p_value": float(result.pvalue),
            "mismatch": bool(result.pvalue < threshold)}


def sample_size(effect: float, std: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0,
                two_sided: bool = True) -> dict[str, float]:
    """Observations per arm (A; B gets `ratio` times as many) to detect a difference of
    `effect` in a metric of standard deviation `std` (normal approximation)."""
    if effect == 0 or std <= 0:
        raise InputError(f"sample size: need effect != 0 and std > 0, got {effect}, {std}")
    z = _z(alpha, two_sided) + float(stats.norm.ppf(power))
    n_a = (z * std / abs(effect)) ** 2 * (1 + 1 / ratio)
    return {"n_a": math.ceil(n_a), "n_b": math.ceil(n_a * ratio), "effect_size": abs(effect) / std}


def power(effect: float, std: float, n_a: int, n_b: int, alpha: float = 0.05, two_sided: bool = True) -> float:
    """The probability of detecting a true difference `effect` with these arm sizes."""
    se = std * math.sqrt(1 / n_a + 1 / n_b)
    shift = abs(effect) / se
    z = _z(alpha, two_sided)
    out = stats.norm.sf(z - shift)
    return float(out + (stats.norm.cdf(-z - shift) if two_sided else 0.0))


def cuped(y: Sequence[float], covariate: Sequence[float], arm: Sequence[int]) -> dict[str, object]:
    """CUPED: y - theta (x - mean x) with theta = cov(y, x) / var(x) pooled over both arms
    (the covariate is pre-period, so untouched by the treatment). Returns the adjusted
    outcomes per arm and the variance reduction, 1 - var(adjusted) / var(y)."""
    yy, xx = _sample("outcome", y), _sample("covariate", covariate)
    groups = np.asarray(arm).ravel()
    if not yy.size == xx.size == groups.size:
        raise InputError(f"cuped: outcome ({yy.size}), covariate ({xx.size}) and arm ({groups.size}) lengths differ")
    if set(np.unique(groups)) - {0, 1}:
        raise InputError(f"cuped: arm must be 0 (A) or 1 (B), got {sorted(set(np.unique(groups)))}")
    var_x = xx.var(ddof=1)
    theta = float(np.cov(yy, xx, ddof=1)[0, 1] / var_x) if var_x > 0 else 0.0
    adjusted = yy - theta * (xx - xx.mean())
    return {"theta": theta, "a": adjusted[groups == 0], "b": adjusted[groups == 1],
            "variance_reduction": float(1 - adjusted.var(ddof=1) / yy.var(ddof=1)) if yy.var() > 0 else 0.0}
