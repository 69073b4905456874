"""Evaluation metrics on host numpy arrays."""

from __future__ import annotations

from collections.abc import Callable

import math

import numpy as np

from hamnet_jax.data.batch import Batch
from hamnet_jax.data.batched import map_batched
from hamnet_jax.models.uncertainty import Z90
from hamnet_jax.transforms.losses import probability_log_loss

REGRESSION_COLUMNS = ("mae", "rmse", "r2", "pearson_r", "coverage_90", "nll", "age_gap_r")
CLASSIFICATION_COLUMNS = ("auroc", "accuracy", "log_loss", "brier")


def regression_metrics(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R², Pearson r, 90% interval coverage and Gaussian NLL."""
    y, mean, std = (np.asarray(a, np.float64) for a in (y, mean, std))
    err = mean - y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r = float(np.corrcoef(y, mean)[0, 1]) if y.size > 1 and mean.std() > 0 and y.std() > 0 else float("nan")
    var = np.maximum(std, 1e-12) ** 2
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
        "pearson_r": r,
        "coverage_90": float((np.abs(err) <= Z90 * std).mean()),
        "nll": float((0.5 * (np.log(2 * math.pi * var) + err**2 / var)).mean()),
    }


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) identity, ties averaged."""
    labels = np.asarray(labels) > 0.5
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = np.asarray(scores)[order]
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def classification_metrics(labels: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """AUROC, accuracy at threshold 0.5, log loss and Brier score of predicted outcome
    probabilities, over the subjects whose outcome is known (NaN labels are skipped)."""
    labels, probability = np.asarray(labels, np.float64), np.asarray(probability, np.float64)
    known = np.isfinite(labels)
    y, p = labels[known], np.clip(probability[known], 1e-7, 1 - 1e-7)
    if y.size == 0:
        return {name: float("nan") for name in CLASSIFICATION_COLUMNS}
    return {
        "auroc": auroc(y, p),
        "accuracy": float(((p > 0.5) == (y > 0.5)).mean()),
        "log_loss": float(np.mean(probability_log_loss(y, p))),
        "brier": float(((p - y) ** 2).mean()),
    }


def age_gap_correlation(pred: np.ndarray, age: np.ndarray, bio_age: np.ndarray) -> float:
    """Correlation of the predicted age gap (prediction - age) with the true gap (bio_age - age)."""
    return float(np.corrcoef(pred - age, bio_age - age)[0, 1])


def point_metrics(predict: Callable[[Batch], dict], batch: Batch, target_std: float = 1.0,
                 batch_size: int = 512) -> dict[str, float]:
    """MAE, RMSE and R^2 of the mean prediction (in target units when `target_std` given)."""
    out = map_batched(predict, batch, batch_size)
    y = np.asarray(batch.targets, np.float64)
    err = (np.asarray(out["mean"], np.float64) - y) * target_std
    ss_tot = float(np.sum((y - y.mean()) ** 2)) * target_std**2
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt(np.mean(err**2))),
            "r2": 1.0 - float(np.sum(err**2)) / max(ss_tot, 1e-12)}
