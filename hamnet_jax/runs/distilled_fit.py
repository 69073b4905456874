"""`fit_run_distilled`: a trained (or derived) run's distilled MC-dropout spread
(inference/distilled_uncertainty.py), fitted on its own splits as training does."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hamnet_jax.config import Config
from hamnet_jax.data.batch import Batch
from hamnet_jax.data.preprocess import Preprocessor
from hamnet_jax.inference.distilled_uncertainty import (DistilledUncertainty, distilled_predict,
                                                        fit_distilled_uncertainty)


def fit_run_distilled(apply_fn: Callable, params: Any, fit_batch: Batch, batches: Mapping[str, Batch],
                      parts: Mapping[str, Any], pre: Preprocessor, config: Config, mc: Callable[[Batch], Mapping]
                      ) -> tuple[DistilledUncertainty, dict[str, np.ndarray]]:
    """A run's distilled MC spread, fitted on `fit_batch` (`distillation_batch` of its training
    split) against `mc(batch)` (its uncalibrated MC predictions) and calibrated on its
    validation split, with its test predictions."""
    slots, training = config.data.max_visits, config.training
    distilled = fit_distilled_uncertainty(
        apply_fn, params, fit_batch.pad_visits(slots), mc, batches["val"].pad_visits(slots),
        parts["val"].targets, parts["val"].labels, pre.target_mean, pre.target_std,
        {"mc_samples": training.mc_samples, "seed": training.seed})
    test = distilled_predict(distilled, apply_fn, params, batches["test"].pad_visits(slots), pre.target_mean,
                             pre.target_std)
    return distilled, test
