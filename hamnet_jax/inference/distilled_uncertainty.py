"""The MC-dropout spread of a run, distilled into one deterministic pass.

MC dropout needs K forward passes per subject (the run's 20); a service that answers
with the epistemic std pays K times the deterministic model's compute. Here a log-linear
map from what one deterministic pass already computes (the summary embedding `fused`
and the heads' raw outputs) predicts each subject's MC spread: `epistemic_std` of the
regression head, `probability_std` of the classification head. It is fitted after
training by ridge regression on the run's own MC-dropout estimates (its K fixed masks,
models/mc_dropout.py) over a subset of the training split. Distilling an MC or ensemble
predictive distribution into a single deterministic model: Malinin, Mlodozeniec & Gales
2020, "Ensemble Distribution Distillation" (ICLR); Shen et al. 2021, "Real-time
Uncertainty Estimation in Computer Vision via Uncertainty-Aware Distribution
Distillation" (WACV).

Why it is not only faster: with K = 20 masks shared by every subject, the per-subject
estimate is noisy (two independent 20-sample draws rank test subjects with Spearman
rho ~0.6 on the default cohort; experiments/bench_uncertainty.py). The regression
averages that noise over training subjects, so the distilled std ranks subjects closer to
a 200-sample estimate than a 20-sample draw does.

A distilled model carries its own interval calibration (`calibration`, fitted on the
validation split from the distilled outputs: the total std is the deterministic
aleatoric std and the distilled epistemic std in quadrature).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hamnet_jax.data.batch import Batch
from hamnet_jax.data.batched import map_batched
from hamnet_jax.inference.calibration import UNCALIBRATED, Calibration, fit_calibration
from hamnet_jax.inference.predictor import calibrated_outputs

# each distilled statistic (its name in `mc_statistics`): the head it needs, and the MC
# prediction column it is fitted to (`predict_batch`'s outputs)
DISTILLED = {"epistemic_std": ("mean", "epistemic_std"), "probability_std": ("logits", "outcome_probability_std")}
FIT_SUBJECTS = 2000  # training subjects the map is fitted on: 4,200 fit no better (bench_uncertainty.py)
RIDGE = 0.01  # ridge penalty per subject on standardized features
STD_FLOOR = 1e-6


@dataclasses.dataclass(frozen=True)
class DistilledUncertainty:
    """`log spread = standardized features @ weights[s] + bias[s]` for each distilled
    statistic s; features are `uncertainty_features` of a deterministic pass."""

    feature_mean: np.ndarray  # [F]
    feature_scale: np.ndarray  # [F]
    weights: Mapping[str, np.ndarray]  # statistic -> [F]
    bias: Mapping[str, float]
    calibration: Calibration = UNCALIBRATED
    fitted_on: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # subjects, mc_samples, seed

    def spreads(self, features: Any, xp: Any = jnp) -> dict[str, Any]:
        """[B, F] features -> each distilled statistic [B] (standardized units); numpy or
        traced arrays (it runs inside exported graphs)."""
        z = (features - xp.asarray(self.feature_mean)) / xp.asarray(self.feature_scale)
        return {s: xp.exp(z @ xp.asarray(w) + self.bias[s]) for s, w in self.weights.items()}

    def statistics(self, samples: Mapping[str, Any], xp: Any = jnp) -> dict[str, Any]:
        """One deterministic pass's samples ([1, B] heads, `features` [1, B, F]) -> the
        statistics `mc_statistics` gives (mean, aleatoric / epistemic / total std;
        probability and its spread), the spreads distilled."""
        spread = self.spreads(samples["features"][0], xp)
        stats: dict[str, Any] = {}
        if "mean" in samples:
            aleatoric = xp.exp(0.5 * samples["log_var"][0])
            epistemic = spread["epistemic_std"]
            stats.update(mean=samples["mean"][0], aleatoric_std=aleatoric, epistemic_std=epistemic,
                         total_std=xp.sqrt(aleatoric ** 2 + epistemic ** 2))
        if "logits" in samples:
            stats.update(probability=1.0 / (1.0 + xp.exp(-samples["logits"][0])),
                         probability_std=spread["probability_std"])
        return stats

    def to_dict(self) -> dict[str, Any]:
        return {"feature_mean": self.feature_mean.tolist(), "feature_scale": self.feature_scale.tolist(),
                "weights": {s: w.tolist() for s, w in self.weights.items()},
                "bias": {s: float(b) for s, b in self.bias.items()}, "calibration": self.calibration.to_dict(),
                "fitted_on": dict(self.fitted_on)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DistilledUncertainty:
        mean = np.asarray(data["feature_mean"], np.float32)
        scale = np.asarray(data["feature_scale"], np.float32)
        weights = {s: np.asarray(w, np.float32) for s, w in data["weights"].items()}
        unknown = sorted(set(weights) - set(DISTILLED))
        if unknown or set(weights) != set(data["bias"]):
            raise ValueError(f"distilled uncertainty: statistics {sorted(weights)} with biases {sorted(data['bias'])}; "
                             f"expected the same names, some of {sorted(DISTILLED)}")
        bad = [s for s, w in weights.items() if w.shape != mean.shape]
        if scale.shape != mean.shape or bad:
            raise ValueError(f"distilled uncertainty: {len(mean)} features, but feature_scale has {scale.shape} "
                             f"and weights {[(s, weights[s].shape) for s in bad]}")
        return cls(mean, scale, weights, {s: float(b) for s, b in data["bias"].items()},
                   Calibration.from_dict(data.get("calibration", {"std_scale": 1.0})), data.get("fitted_on", {}))


def distillation_rows(subjects: int, seed: int) -> np.ndarray:
    """The training subjects the map is fitted on: `FIT_SUBJECTS` of them drawn by `seed`, in order."""
    if subjects <= FIT_SUBJECTS:
        return np.arange(subjects)
    return np.sort(np.random.default_rng(seed).choice(subjects, FIT_SUBJECTS, replace=False))


def distillation_batch(train: Batch, seed: int) -> Batch:
    """Those subjects of the training split, read once (their MC pass and the fit share them)."""
    return train.take(distillation_rows(train.size, seed))


def uncertainty_features(outputs: Mapping[str, Any], aux: Mapping[str, Any]) -> Any:
    """[B, F]: the summary embedding and the heads' raw outputs of a deterministic pass."""
    heads = [outputs[k][:, None] for k in ("mean", "log_var", "logits") if k in outputs]
    return jnp.concatenate([aux["fused"].astype(jnp.float32)] + [h.astype(jnp.float32) for h in heads], axis=-1)


@functools.lru_cache(maxsize=16)
def _deterministic_program(apply_fn: Callable) -> Callable:
    """One jitted pass per apply function: fitting and predicting reuse its compilation."""

    @jax.jit
    def run(p: Any, b: Batch) -> dict:
        out, aux = apply_fn({"params": p}, b, deterministic=True)
        return {**{k: v.astype(jnp.float32) for k, v in out.items()}, "features": uncertainty_features(out, aux)}

    return run


def deterministic_pass(apply_fn: Callable, params: Any, batch: Batch, chunk: int = 256) -> dict[str, np.ndarray]:
    """The heads' outputs and `features` of the deterministic model over a batch."""
    run = _deterministic_program(apply_fn)
    return map_batched(lambda b: run(params, b), batch, chunk)


def ridge_log_fit(features: np.ndarray, spread: np.ndarray, penalty: float = RIDGE
                  ) -> tuple[np.ndarray, float]:
    """Weights and bias of log spread on standardized features (closed-form ridge), the bias
    then moved so that the mean predicted variance equals the mean MC variance (exp of a
    fitted log mean underestimates the mean of the variance)."""
    z, target = features.astype(np.float64), np.log(np.maximum(spread.astype(np.float64), STD_FLOOR))
    gram = z.T @ z + penalty * len(z) * np.eye(z.shape[1])
    weights = np.linalg.solve(gram, z.T @ (target - target.mean()))
    bias = float(target.mean())
    fitted = np.exp(z @ weights + bias)
    bias += 0.5 * math.log(np.mean(np.maximum(spread, STD_FLOOR) ** 2) / np.mean(fitted ** 2))
    return weights.astype(np.float32), bias


def fit_distilled_uncertainty(apply_fn: Callable, params: Any, train: Batch, mc: Callable[[Batch], Mapping],
                              val: Batch, val_targets: np.ndarray | None, val_labels: np.ndarray | None,
                              target_mean: float, target_std: float, fitted_on: Mapping[str, Any] | None = None
                              ) -> DistilledUncertainty:
    """Fit on `train` (`distillation_batch` of the training split) against `mc(train)`, its
    uncalibrated MC predictions (`predict_batch`, target units), then the distilled model's
    interval scale and temperature on `val`. Both batches are padded to the served visit slots."""
    mc_train = mc(train)
    det = deterministic_pass(apply_fn, params, train)
    mean, spread = det["features"].mean(0), det["features"].std(0)
    scale = np.where(spread > STD_FLOOR, spread, 1.0)  # a feature constant here is left unscaled, not blown up
    z = (det["features"] - mean) / scale
    weights, bias = {}, {}
    for stat, (head, column) in DISTILLED.items():
        if head in det:
            unit = target_std if head == "mean" else 1.0  # (an outcome probability has no unit)
            weights[stat], bias[stat] = ridge_log_fit(z, np.asarray(mc_train[column]) / unit)
    model = DistilledUncertainty(mean.astype(np.float32), scale.astype(np.float32), weights, bias,
                                 fitted_on={"subjects": int(train.size), "ridge": RIDGE, **(fitted_on or {})})
    uncalibrated = distilled_predict(model, apply_fn, params, val, target_mean, target_std, UNCALIBRATED)
    return dataclasses.replace(model, calibration=fit_calibration(val_targets, val_labels, uncalibrated))


def distilled_predict(model: DistilledUncertainty, apply_fn: Callable, params: Any, batch: Batch,
                      target_mean: float, target_std: float, calibration: Calibration | None = None
                      ) -> dict[str, np.ndarray]:
    """`predict_batch`'s outputs from one deterministic pass and the distilled spreads
    (calibration: the model's own unless given; `UNCALIBRATED` while fitting it)."""
    det = deterministic_pass(apply_fn, params, batch)
    stats = model.statistics({k: np.asarray(v)[None] for k, v in det.items()}, np)
    out = calibrated_outputs(stats, target_mean, target_std, model.calibration if calibration is None else calibration)
    return {k: np.asarray(v) for k, v in out.items()}
