"""PNG plots of a run: the learning curve, predicted vs. true values (regression head) and
the reliability diagram (classification head)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def plot_learning_curve(history: list[dict], path: Path, best_epoch: int | None = None,
                        loss_name: str = "Gaussian NLL (standardized target)") -> None:
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [r["train_loss"] for r in history], label="train loss")
    ax.plot(epochs, [r["val_loss"] for r in history], label="validation loss")
    if best_epoch:
        ax.axvline(best_epoch, color="k", ls=":", lw=1, label=f"selected epoch ({best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(loss_name)
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_pred_vs_true(y: np.ndarray, pred: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                      path: Path, label: str = "age") -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.errorbar(y, pred, yerr=[pred - lower, upper - pred], fmt="o", ms=2, alpha=0.35, elinewidth=0.5)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"true {label}")
    ax.set_ylabel(f"predicted {label} (90% interval)")
    ax.set_title("test split")
    _save(fig, path)


def plot_reliability(labels: np.ndarray, probability: np.ndarray, path: Path, label: str = "outcome",
                     bins: int = 10) -> None:
    """Observed outcome rate against the mean predicted probability in equal-count bins:
    points on the diagonal are calibrated probabilities."""
    plt = _pyplot()
    order = np.argsort(probability)
    groups = [g for g in np.array_split(order, min(bins, len(order))) if g.size]
    mean_p = [float(probability[g].mean()) for g in groups]
    rate = [float(labels[g].mean()) for g in groups]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.plot(mean_p, rate, "o-", ms=4)
    ax.set_xlabel(f"predicted probability of {label}")
    ax.set_ylabel(f"observed rate of {label}")
    ax.set_title(f"test split, {len(groups)} equal-count bins")
    _save(fig, path)
