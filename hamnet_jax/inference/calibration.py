"""Post-hoc calibration of a run's predictions, fitted on its validation split.

Two scalars, each the identity at 1.0:

- `std_scale` multiplies the predicted standard deviations so that the 90% interval covers
  90% of held-out targets (std scaling, Levi et al. 2022, "Evaluating and calibrating
  uncertainty prediction in regression tasks").
- `logit_temperature` T divides the log-odds of the outcome probability, p -> sigmoid(logit(p) / T),
  with T chosen by validation log loss (temperature scaling, Guo et al. 2017, "On calibration
  of modern neural networks"). It is applied to the MC-averaged probability, so it runs
  after the model, in `hamnet predict` and inside exported graphs alike; T > 1 softens
  over-confident probabilities, and a monotone map leaves AUROC unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from hamnet_jax.models.uncertainty import Z90

# The search range of log T: T in [1/20, 20] covers any temperature a trained head needs.
LOG_TEMPERATURE_BOUND = math.log(20.0)
PROBABILITY_FLOOR = 1e-7


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The run's fitted calibration (`calibration.json`)."""

    std_scale: float = 1.0
    logit_temperature: float = 1.0

    def __post_init__(self) -> None:
        for name in ("std_scale", "logit_temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"calibration {name} must be a finite number > 0, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """`calibration.json`'s content; runs written before temperature scaling have only
        `std_scale`, so their probabilities stay as trained (T = 1)."""
        return cls(float(data["std_scale"]), float(data.get("logit_temperature", 1.0)))


UNCALIBRATED = Calibration()  # the identity: what a model predicts before calibration is fitted


def calibrate_std_scale(y: np.ndarray, prediction: np.ndarray, total_std: np.ndarray) -> float:
    """Factor s so that prediction ± 1.645 s σ covers 90% of held-out targets: the 90%
    quantile of |error| / σ over 1.645 (subjects without a target are skipped)."""
    y = np.asarray(y, np.float64)
    known = np.isfinite(y)
    z = np.abs(y[known] - prediction[known]) / np.maximum(total_std[known], 1e-12)
    return float(np.quantile(z, 0.9) / Z90)


def _log_odds(probability: Any, xp: Any) -> Any:
    p = xp.clip(probability, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return xp.log(p) - xp.log1p(-p)


def fit_logit_temperature(labels: np.ndarray, probability: np.ndarray) -> float:
    """T minimizing the log loss of sigmoid(logit(p) / T) over subjects with a known label
    (one bounded scalar search on log T; the loss is convex in 1 / T)."""
    labels = np.asarray(labels, np.float64)
    known = np.isfinite(labels)
    y = labels[known]
    if y.size == 0 or y.min() == y.max():
        return 1.0  # nothing to fit: no label, or a single class
    z = _log_odds(np.asarray(probability, np.float64)[known], np)

    def log_loss(log_t: float) -> float:
        s = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))  # -[y log σ(s) + (1-y) log(1-σ(s))]

    best = minimize_scalar(log_loss, bounds=(-LOG_TEMPERATURE_BOUND, LOG_TEMPERATURE_BOUND), method="bounded",
                           options={"xatol": 1e-6})
    return float(math.exp(best.x)) if log_loss(best.x) < log_loss(0.0) else 1.0


def tempered_probability(probability: Any, probability_std: Any | None, temperature: float,
                         xp: Any = np) -> tuple[Any, Any | None]:
    """The probability after temperature scaling and its spread carried through the map by
    its derivative (delta method: dp'/dp = p'(1-p') / (T p(1-p))). `xp` is numpy or
    jax.numpy, so exported graphs run the same map."""
    if temperature == 1.0:
        return probability, probability_std
    tempered = 1.0 / (1.0 + xp.exp(-_log_odds(probability, xp) / temperature))
    if probability_std is None:
        return tempered, None
    p = xp.clip(probability, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    slope = tempered * (1 - tempered) / (temperature * p * (1 - p))
    return tempered, probability_std * slope


def fit_calibration(targets: np.ndarray | None, labels: np.ndarray | None, uncalibrated: Mapping[str, np.ndarray]
                    ) -> Calibration:
    """The calibration of a model from its uncalibrated validation predictions (`predict_batch`
    with `Calibration()`): the interval scale of a regression head, the temperature of a
    classification head."""
    std_scale, temperature = 1.0, 1.0
    if "prediction" in uncalibrated:
        std_scale = calibrate_std_scale(targets, uncalibrated["prediction"], uncalibrated["total_std"])
    if "outcome_probability" in uncalibrated:
        temperature = fit_logit_temperature(labels, uncalibrated["outcome_probability"])
    return Calibration(std_scale, temperature)
