"""A fitted start for the wide path (`training.wide_start: fitted`).

On a small cohort a deep model trained from a random start can end below a linear model fitted
on the same rows: it has to discover the linear part of the signal through noisy gradients
and stops early. Starting the wide path at the linear model's solution — ridge regression for
the mean, L2-regularized logistic regression for the outcome — with the deep heads' last
layers zeroed makes the untrained network exactly that linear model; the wide path then
stays fixed (`freeze_wide`) while training moves the deep part where the validation metric
says it helps. The log-variance head starts at the ridge's leave-one-out residual variance,
so the Gaussian NLL starts calibrated.

The fits are closed-form numpy rather than scikit-learn (an optional extra, and this runs
in every small-cohort training): ridge picks its penalty by exact leave-one-out error from
one SVD (Golub, Heath and Wahba 1979); logistic regression by Newton's method (L-BFGS on
wide inputs) along a warm-started penalty path, the penalty picked by k-fold
cross-validated log loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.optimize import minimize

from hamnet_jax.data.batch import Batch
from hamnet_jax.data.cohort_batches import CohortBatches
from hamnet_jax.data.batched import map_batched
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, init_params, wide_features
from hamnet_jax.training.plan import Plan

RIDGE_PENALTIES = np.logspace(-2, 5, 29)
LOGISTIC_PENALTIES = np.logspace(-2, 4, 13)
LOGISTIC_FOLDS = 5
WIDE_CHUNK = 4096  # subjects per pass of the wide features (a cached cohort is read in chunks)


def ridge_loo(x: np.ndarray, y: np.ndarray, penalties: np.ndarray = RIDGE_PENALTIES
              ) -> tuple[np.ndarray, float, float]:
    """(weights, intercept, leave-one-out mean squared error) of ridge regression with the
    penalty (from `penalties`) of least exact leave-one-out error; the intercept is not
    penalized (the columns are centered)."""
    mean_x, mean_y = x.mean(0), y.mean()
    xc, yc = x - mean_x, y - mean_y
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    uty = u.T @ yc
    best = None
    for alpha in penalties:
        shrink = s**2 / (s**2 + alpha)
        fitted = u @ (shrink * uty)
        leverage = (u**2) @ shrink + 1.0 / len(y)  # the intercept's leverage too
        loo = float(np.mean(((yc - fitted) / (1.0 - leverage)) ** 2))
        if best is None or loo < best[0]:
            best = (loo, alpha)
    loo, alpha = best
    w = vt.T @ (s / (s**2 + alpha) * uty)
    return w, float(mean_y - mean_x @ w), loo


def logistic_newton(x: np.ndarray, y: np.ndarray, penalty: float, start: np.ndarray | None = None,
                    iterations: int = 25) -> np.ndarray:
    """[weights..., intercept] minimizing the summed log loss + penalty/2 |w|^2 (intercept
    free) by Newton's method from `start` (zeros): strictly convex, so it converges in a few
    steps, each forming and solving the F x F Hessian."""
    xa = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    reg = np.full(xa.shape[1], penalty)
    reg[-1] = 1e-8
    beta = np.zeros(xa.shape[1]) if start is None else start.copy()
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xa @ beta, -30, 30)))
        step = np.linalg.solve((xa * (p * (1 - p))[:, None]).T @ xa + np.diag(reg), xa.T @ (p - y) + reg * beta)
        beta = beta - step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta


def logistic_lbfgs(x: np.ndarray, y: np.ndarray, penalty: float, start: np.ndarray | None = None,
                   tolerance: float = 1e-10) -> np.ndarray:
    """The same minimizer by L-BFGS (scipy): two matrix-vector products per step, and many
    steps where the penalty is weak."""
    n, f = x.shape

    def loss_and_grad(beta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ beta[:f] + beta[f]
        loss = np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * penalty * beta[:f] @ beta[:f]
        residual = 0.5 * (1.0 + np.tanh(0.5 * z)) - y  # sigmoid(z) - y, overflow-free
        grad = np.append(x.T @ residual + penalty * beta[:f], residual.sum())
        return float(loss / n), grad / n

    beta = np.zeros(f + 1) if start is None else start
    result = minimize(loss_and_grad, beta, jac=True, method="L-BFGS-B",
                      options={"maxiter": 20_000, "maxcor": 30, "gtol": tolerance, "ftol": 1e-15})
    return result.x


NEWTON_MAX_FEATURES = 1500


def logistic_fit(x: np.ndarray, y: np.ndarray, penalty: float, start: np.ndarray | None = None) -> np.ndarray:
    """L2 logistic regression: Newton's method up to `NEWTON_MAX_FEATURES` wide inputs, L-BFGS
    beyond, where the F x F Hessian dominates. experiments/bench_wide_start.py times both on
    one path: with other jobs sharing the CPU, Newton was 4x faster at 2,000 rows x 1,000
    inputs and L-BFGS 3.6x faster at 2,000 x 2,000."""
    solver = logistic_newton if x.shape[1] <= NEWTON_MAX_FEATURES else logistic_lbfgs
    return solver(x, y, penalty, start)


def logistic_cv(x: np.ndarray, y: np.ndarray, penalties: np.ndarray = LOGISTIC_PENALTIES,
                folds: int = LOGISTIC_FOLDS, seed: int = 0, solver: Callable[..., np.ndarray] = logistic_fit,
                ) -> tuple[np.ndarray, float, float]:
    """(weights, intercept, penalty): `solver` (`logistic_fit`; experiments/bench_wide_start.py
    passes each method) refitted on all rows with the penalty of least `folds`-fold
    cross-validated log loss."""
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    penalties = np.sort(penalties)[::-1]  # strongest first: each fit warm-starts the next
    losses = np.zeros(len(penalties))
    for k in range(folds):
        fit, held = fold != k, fold == k
        beta = None
        for i, penalty in enumerate(penalties):
            beta = solver(x[fit], y[fit], penalty, start=beta)
            p = np.clip(1.0 / (1.0 + np.exp(-(x[held] @ beta[:-1] + beta[-1]))), 1e-12, 1 - 1e-12)
            losses[i] -= float(np.sum(y[held] * np.log(p) + (1 - y[held]) * np.log(1 - p)))
    penalty = float(penalties[int(np.argmin(losses))])
    beta = solver(x, y, penalty)
    return beta[:-1], float(beta[-1]), penalty


def _log_var_bias(config: HAMNetConfig, variance: float) -> float:
    """The log-variance head's raw bias whose output is log(`variance`) (the head maps raw
    through a sigmoid into [log_var_min, log_var_max])."""
    lo, hi = config.log_var_min, config.log_var_max
    frac = np.clip((np.log(max(variance, 1e-12)) - lo) / (hi - lo), 1e-4, 1 - 1e-4)
    return float(np.log(frac / (1 - frac)))


def fitted_wide_start(config: HAMNetConfig, params: Any, train: Batch | CohortBatches, seed: int = 0) -> Any:
    """`params` with the wide path set to linear fits on `train` (standardized target for the
    mean column, the outcome for the logit column) and the deep heads' last layers zeroed,
    so the network's outputs equal the linear models'."""
    if not config.wide:
        raise InputError("training.wide_start: fitted needs the wide path (model.wide: true)")
    features = jax.jit(wide_features, static_argnums=0)
    x = np.asarray(map_batched(lambda b: {"x": features(config, b)}, train, WIDE_CHUNK)["x"], np.float64)
    kernel = np.zeros(params["wide"]["kernel"].shape, np.float32)
    bias = np.zeros(params["wide"]["bias"].shape, np.float32)
    params = jax.tree_util.tree_map(np.asarray, params)
    params = {**params, "wide": {"kernel": kernel, "bias": bias}}
    if config.regression:
        y = np.asarray(train.targets, np.float64)
        rows = np.isfinite(y)
        w, b, loo = ridge_loo(x[rows], y[rows])
        kernel[:, 0], bias[0] = w, b
        params["mean_head"] = {k: np.zeros_like(v) for k, v in params["mean_head"].items()}
        params["log_var_head"] = {"kernel": np.zeros_like(params["log_var_head"]["kernel"]),
                                  "bias": np.full_like(params["log_var_head"]["bias"], _log_var_bias(config, loo))}
    if config.classification:
        y = np.asarray(train.labels, np.float64)
        rows = np.isfinite(y)
        if len(np.unique(y[rows])) == 2:  # (a one-class outcome leaves the logit column at zero)
            w, b, _ = logistic_cv(x[rows], y[rows], seed=seed)
            kernel[:, -1], bias[-1] = w, b
            params["class_head"] = {k: np.zeros_like(v) for k, v in params["class_head"].items()}
    return params


def freeze_wide(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` with the wide path's gradients and updates zeroed: Adam moves each weight by about
    the learning rate per step whatever its gradient, so on a few thousand wide inputs a
    trainable linear start is lost within an epoch (measured on the frailty world: MAE 1.24x
    the best baseline, best epoch 1). Zeroed before `tx` (gradient clipping ignores them) and
    after it (decoupled weight decay would still move them); stateless, so the optimizer
    state keeps the parameters' tree, which sharding the state relies on."""
    def zero(updates: Any, params: Any = None) -> Any:
        if "wide" not in updates:
            return updates
        return {**updates, "wide": jax.tree_util.tree_map(jnp.zeros_like, updates["wide"])}

    return optax.chain(optax.stateless(zero), tx, optax.stateless(zero))


def fitted_plan(plan: Plan, config: HAMNetConfig, train: Batch | CohortBatches, seed: int,
                start_params: bool = True) -> Plan:
    """`plan` with the wide path fixed at its linear fit: the optimizer leaves it alone, and
    with `start_params` (not when resuming: the checkpoint holds them) training starts from
    `fitted_wide_start` of the plan's start params (the seeded init, as `fit` makes it, when
    the plan gives none)."""
    wrap = plan.wrap_tx
    plan = dataclasses.replace(plan, wrap_tx=lambda tx: freeze_wide(wrap(tx)))
    if not start_params:
        return plan
    start = plan.init_params
    if start is None:
        start = init_params(HAMNet(config), train.take(np.arange(min(train.size, 2))),
                            jax.random.fold_in(jax.random.key(seed), 0))
    return dataclasses.replace(plan, init_params=fitted_wide_start(config, start, train, seed))
