"""`evaluate_run`: HAMNet on the test split beside the tabular baselines fitted on the
run's training split, plus HAMNet with each modality removed from every test subject."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from hamnet_jax.data.arrays import CohortArrays
from hamnet_jax.data.batch import subjects_without_modality
from hamnet_jax.data.dataset import load_cohort, split_cohort
from hamnet_jax.errors import InputError
from hamnet_jax.evaluation.baseline_cache import cached_baselines
from hamnet_jax.evaluation.baselines import predict_baseline
from hamnet_jax.inference.predictor import predict_batch
from hamnet_jax.models.config import MODALITIES
from hamnet_jax.run_dir import Run
from hamnet_jax.evaluation.metrics import age_gap_correlation, classification_metrics, regression_metrics

COLUMNS = ("mae", "rmse", "r2", "pearson_r", "coverage_90", "nll", "age_gap_r")


def predict_run(run: Run, data: CohortArrays) -> dict[str, np.ndarray]:
    """Calibrated MC-dropout predictions of a run on raw cohort arrays."""
    pre = run.preprocessor
    batch = pre.transform(data)
    empty = subjects_without_modality(batch)
    if empty.size:
        raise InputError(f"subject {data.subject_ids[empty[0]]!r} has no modality measured at any visit "
                         f"({empty.size} such subject(s)); HAMNet needs at least one modality per subject")
    model = run.model  # the run's own execution path: int8 codes for a quantized run
    # padded to the run's visit slots: a subject's MC masks, hence its result, then do not
    # depend on how many visits other subjects of the file have (models/mc_dropout.py)
    return predict_batch(model.config, model.params, batch, pre.target_mean, pre.target_std, run.std_scale,
                         run.config.training.mc_samples, run.config.training.seed, apply_fn=model.apply_fn(),
                         visit_slots=run.config.data.max_visits)


def prediction_metrics(data: CohortArrays, pred: dict[str, np.ndarray]) -> dict[str, float]:
    """Metrics of `pred` (`prediction`, optional `total_std` and `outcome_probability`) on `data`:
    regression metrics, age-gap correlation when `bio_age` is known, AUROC / accuracy."""
    std = pred.get("total_std")
    m = regression_metrics(data.targets, pred["prediction"], std if std is not None else
                           np.full_like(pred["prediction"], np.nan))
    if std is None:
        m["coverage_90"] = m["nll"] = float("nan")
    m["age_gap_r"] = (age_gap_correlation(pred["prediction"], data.targets, data.extras["bio_age"])
                      if "bio_age" in data.extras else float("nan"))
    if "outcome_probability" in pred:
        m.update(classification_metrics(data.labels, pred["outcome_probability"]))
    return m


def modality_removed_row(run: Run, sub: CohortArrays, pred: dict[str, np.ndarray], kept: np.ndarray,
                         had: np.ndarray) -> dict[str, float]:
    """Metrics of HAMNet on `sub` (test subjects `kept`, one modality removed from each), and
    how much worse the subjects that `had` the modality get without it."""
    p = predict_run(run, sub)
    p.pop("outcome_probability", None)
    row = prediction_metrics(sub, p)
    row["subjects"] = float(sub.num_subjects)
    row["subjects_with_modality"] = float(had.sum())
    row["mae_with_modality"] = float(np.abs(pred["prediction"][kept][had] - sub.targets[had]).mean())
    row["mae_modality_removed"] = float(np.abs(p["prediction"][had] - sub.targets[had]).mean())
    row["mae_increase_on_affected"] = row["mae_modality_removed"] - row["mae_with_modality"]
    return row


def evaluate_run(run: Run, data_path: str | os.PathLike, baselines: bool = True,
                 baseline_features: str = "all-visits",
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """HAMNet's test metrics, modality-removal rows and (fitted once per training split, then
    cached in the run directory) the baselines on `baseline_features`."""
    say = progress or (lambda _: None)
    arrays = load_cohort(data_path, run.schema, run.config.data)
    parts = split_cohort(arrays, run.config.data)
    test = parts["test"]
    if test.num_subjects == 0:
        raise InputError(f"{data_path}: no subject of this file falls in the run's test split")
    rows: dict[str, dict[str, float]] = {}
    say(f"HAMNet on {test.num_subjects:,} test subjects")
    pred = predict_run(run, test)
    rows["HAMNet"] = prediction_metrics(test, pred)
    full_batch = run.preprocessor.transform(test)
    skipped: dict[str, str] = {}
    for i, m in enumerate(MODALITIES):
        if run.model_config.has_modality(m):
            ablated = test.without_modality(m)
            kept = np.setdiff1d(np.arange(ablated.num_subjects), subjects_without_modality(
                run.preprocessor.transform(ablated)))
            say(f"HAMNet without {m}")
            if kept.size == 0:
                skipped[f"HAMNet without {m}"] = f"no test subject has a modality other than {m}"
                continue
            rows[f"HAMNet without {m}"] = modality_removed_row(run, ablated.subset(kept), pred, kept,
                                                              full_batch.modality_mask[kept, :, i].any(axis=1))
    cached = None
    if baselines:
        fitted, cached = cached_baselines(run.path, parts["train"], run.config.training.seed, baseline_features,
                                          progress)
        for name, model in fitted.items():
            rows[name] = prediction_metrics(test, {"prediction": predict_baseline(model, test)})
    hgb = rows.get("hist_gradient_boosting")
    return {
        "test_subjects": test.num_subjects,
        "rows": rows,
        "skipped_rows": skipped,
        "baseline_features": baseline_features if baselines else None,
        "baselines_cached": cached,
        "mae_ratio_vs_hist_gradient_boosting": rows["HAMNet"]["mae"] / hgb["mae"] if hgb else None,
    }


def format_table(result: dict[str, Any]) -> str:
    head = f"{'model':<28}" + "".join(f"{c:>12}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, row in result["rows"].items():
        lines.append(f"{name:<28}" + "".join(f"{row.get(c, float('nan')):>12.4f}" for c in COLUMNS))
    for name, row in result["rows"].items():
        if "subjects_with_modality" in row:
            lines.append(f"{name}: on the {int(row['subjects_with_modality'])} test subjects that had it, MAE "
                         f"{row['mae_with_modality']:.3f} -> {row['mae_modality_removed']:.3f}")
    for name, why in result.get("skipped_rows", {}).items():
        lines.append(f"{name}: not measured ({why})")
    if result.get("baseline_features"):
        lines.append(f"baselines fitted on the training split's {result['baseline_features']} features"
                     + (" (reused from the run directory)" if result.get("baselines_cached") else ""))
    if result.get("mae_ratio_vs_hist_gradient_boosting") is not None:
        lines.append(f"HAMNet MAE / HistGradientBoosting MAE = {result['mae_ratio_vs_hist_gradient_boosting']:.3f}"
                     f"  (test subjects: {result['test_subjects']})")
    return "\n".join(lines)
