"""`evaluate_run`: HAMNet on the test split beside the tabular baselines fitted on the
run's training split, plus HAMNet with each modality removed from every test subject.

Regression metrics for a model with a regression head (beside ridge and gradient-boosting
regressors), classification metrics for one with a classification head (beside logistic
regression and a gradient-boosting classifier); a model with both gets both."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from hamnet_jax.data.arrays import CohortArrays
from hamnet_jax.data.batch import subjects_without_modality
from hamnet_jax.data.cohort_batches import model_input
from hamnet_jax.data.cohort_cache import CachedCohort
from hamnet_jax.data.dataset import open_cohort, split_cohort
from hamnet_jax.errors import InputError
from hamnet_jax.evaluation.baseline_cache import cached_baselines
from hamnet_jax.evaluation.baselines import BASELINE_MAX_SUBJECTS, baseline_training_subjects, predict_baseline
from hamnet_jax.runs.prediction_cache import cached_predictions, run_fingerprint
from hamnet_jax.inference.predictor import predict_batch
from hamnet_jax.models.config import MODALITIES
from hamnet_jax.runs.run_dir import Run
from hamnet_jax.transforms.losses import probability_log_loss
from hamnet_jax.evaluation.metrics import (CLASSIFICATION_COLUMNS, REGRESSION_COLUMNS, age_gap_correlation,
                                           classification_metrics, regression_metrics)

COLUMNS = REGRESSION_COLUMNS + CLASSIFICATION_COLUMNS


def predict_run(run: Run, data: CohortArrays | CachedCohort) -> dict[str, np.ndarray]:
    """Calibrated MC-dropout predictions of a run on raw cohort arrays (or a cached cohort,
    standardized a chunk at a time)."""
    pre = run.preprocessor
    batch = model_input(pre, data)
    empty = subjects_without_modality(batch)
    if empty.size:
        raise InputError(f"subject {data.subject_ids[empty[0]]!r} has no modality measured at any visit "
                         f"({empty.size} such subject(s)); HAMNet needs at least one modality per subject")
    model = run.model  # the run's own execution path: int8 codes for a quantized run
    # padded to the run's visit slots: a subject's MC masks, hence its result, then do not
    # depend on how many visits other subjects of the file have (models/mc_dropout.py)
    return predict_batch(model.config, model.params, batch, pre.target_mean, pre.target_std, run.calibration,
                         run.config.training.mc_samples, run.config.training.seed, apply_fn=model.apply_fn(),
                         visit_slots=run.config.data.max_visits)


def prediction_metrics(data: CohortArrays | CachedCohort, pred: dict[str, np.ndarray]) -> dict[str, float]:
    """Metrics of `pred` on `data`: with a `prediction` (optional `total_std`), regression
    metrics and the age-gap correlation when `bio_age` is known; with an
    `outcome_probability`, AUROC / accuracy / log loss / Brier score."""
    m: dict[str, float] = {}
    if "prediction" in pred:
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


def _per_subject_error(data: CohortArrays | CachedCohort, pred: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
    """The error a modality-removal row compares: absolute error of the regression head,
    else the log loss of the outcome."""
    if "prediction" in pred:
        return "mae", np.abs(pred["prediction"] - data.targets)
    return "log_loss", np.asarray(probability_log_loss(data.labels, pred["outcome_probability"]))


def modality_removed_row(sub: CohortArrays | CachedCohort, pred: dict[str, np.ndarray], p: dict[str, np.ndarray],
                         kept: np.ndarray, had: np.ndarray) -> dict[str, Any]:
    """Metrics of HAMNet's predictions `p` on `sub` (test subjects `kept`, one modality removed
    from each), and how much worse the subjects that `had` the modality get without it than
    in `pred` (MAE, or the log loss of an outcome-only model)."""
    p = dict(p)
    if "prediction" in p:  # the regression table's row; the outcome has its own full-data row
        p.pop("outcome_probability", None)
    row = prediction_metrics(sub, p)
    row["subjects"] = float(sub.num_subjects)
    row["subjects_with_modality"] = float(had.sum())
    name, before = _per_subject_error(sub, {k: v[kept] for k, v in pred.items()})
    _, after = _per_subject_error(sub, p)
    row["error_metric"] = name
    row[f"{name}_with_modality"] = float(before[had].mean())
    row[f"{name}_modality_removed"] = float(after[had].mean())
    row[f"{name}_increase_on_affected"] = row[f"{name}_modality_removed"] - row[f"{name}_with_modality"]
    return row


def evaluate_run(run: Run, data_path: str | os.PathLike, baselines: bool = True,
                 baseline_features: str = "all-visits",
                 progress: Callable[[str], None] | None = None,
                 baseline_subjects: int = BASELINE_MAX_SUBJECTS) -> dict[str, Any]:
    """HAMNet's test metrics, modality-removal rows and (fitted once per training split, then
    cached in the run directory) the baselines on `baseline_features`, fitted on at most
    `baseline_subjects` training subjects (a seeded sample above that). The data file is
    read through the run directory's cohort cache (`data.cache`), as training read it."""
    say = progress or (lambda _: None)
    arrays = open_cohort(data_path, run.schema, run.config.data)
    parts = split_cohort(arrays, run.config.data)
    test = parts["test"]
    if test.num_subjects == 0:
        raise InputError(f"{data_path}: no subject of this file falls in the run's test split")
    rows: dict[str, dict[str, float]] = {}
    fingerprint = run_fingerprint(run)
    reused: list[bool] = []

    def predict(data: CohortArrays | CachedCohort, name: str) -> dict[str, np.ndarray]:
        pred, hit = cached_predictions(run, fingerprint, data, name, lambda: predict_run(run, data))
        reused.append(hit)
        return pred

    say(f"HAMNet on {test.num_subjects:,} test subjects")
    pred = predict(test, "test")
    rows["HAMNet"] = prediction_metrics(test, pred)
    test_batches = model_input(run.preprocessor, test)  # (its modality mask: one pass over the test split)
    present = np.asarray(test_batches.modality_mask) * np.asarray(test_batches.visit_mask)[..., None]
    skipped: dict[str, str] = {}
    for i, m in enumerate(MODALITIES):
        if run.model_config.has_modality(m):
            ablated = test.without_modality(m)
            # removing m zeroes its column of the modality mask and nothing else: the
            # subjects left with some modality, without reading the split again
            kept = np.flatnonzero(np.delete(present, i, axis=-1).sum(axis=(1, 2)) > 0)
            say(f"HAMNet without {m}")
            if kept.size == 0:
                skipped[f"HAMNet without {m}"] = f"no test subject has a modality other than {m}"
                continue
            sub = ablated.subset(kept)
            rows[f"HAMNet without {m}"] = modality_removed_row(sub, pred, predict(sub, f"without-{m}"), kept,
                                                              present[kept, :, i].any(axis=1))
    cached = fitted_on = None
    if baselines:
        tasks = ("regression",) * run.model_config.regression + ("classification",) * run.model_config.classification
        sample = baseline_training_subjects(parts["train"], baseline_subjects, run.config.training.seed)
        fitted_on = {"subjects": sample.num_subjects, "of": parts["train"].num_subjects}
        fitted, cached = cached_baselines(None, sample, run.config.training.seed, baseline_features,
                                          progress, tasks)
        for name, model in fitted.items():
            rows[name] = prediction_metrics(test, predict_baseline(model, test))
    hgb = rows.get("hist_gradient_boosting")
    return {
        "test_subjects": test.num_subjects,
        "rows": rows,
        "skipped_rows": skipped,
        "baseline_features": baseline_features if baselines else None,
        "baselines_cached": cached,
        "baseline_training_subjects": fitted_on,
        "predictions_cached": all(reused),
        "mae_ratio_vs_hist_gradient_boosting": rows["HAMNet"]["mae"] / hgb["mae"] if hgb else None,
    }


def _table(rows: dict[str, dict[str, float]], columns: tuple[str, ...]) -> list[str]:
    head = f"{'model':<34}" + "".join(f"{c:>12}" for c in columns)
    lines = [head, "-" * len(head)]
    for name, row in rows.items():
        lines.append(f"{name:<34}" + "".join(f"{row.get(c, float('nan')):>12.4f}" for c in columns))
    return lines


def format_table(result: dict[str, Any]) -> str:
    """The regression table (rows with a regression metric) and the classification table
    (rows with an outcome metric), then the notes."""
    lines: list[str] = []
    for columns in (REGRESSION_COLUMNS, CLASSIFICATION_COLUMNS):
        rows = {n: r for n, r in result["rows"].items() if columns[0] in r}
        if rows:
            lines += ([""] if lines else []) + _table(rows, columns)
    for name, row in result["rows"].items():
        if "subjects_with_modality" in row:
            metric = row.get("error_metric", "mae")
            what = "MAE" if metric == "mae" else "log loss"
            lines.append(f"{name}: on the {int(row['subjects_with_modality'])} test subjects that had it, {what} "
                         f"{row[f'{metric}_with_modality']:.3f} -> {row[f'{metric}_modality_removed']:.3f}")
    for name, why in result.get("skipped_rows", {}).items():
        lines.append(f"{name}: not measured ({why})")
    if result.get("predictions_cached"):
        lines.append("HAMNet's predictions reused from the run directory (same run, same inputs)")
    if result.get("baseline_features"):
        fitted_on = result.get("baseline_training_subjects") or {}
        whose = ("the training split's" if fitted_on.get("subjects") == fitted_on.get("of") else
                 f"a seeded sample of {fitted_on['subjects']:,} of the {fitted_on['of']:,} training subjects'")
        lines.append(f"baselines fitted on {whose} {result['baseline_features']} features"
                     + (" (reused from the run directory)" if result.get("baselines_cached") else ""))
    if result.get("mae_ratio_vs_hist_gradient_boosting") is not None:
        lines.append(f"HAMNet MAE / HistGradientBoosting MAE = {result['mae_ratio_vs_hist_gradient_boosting']:.3f}"
                     f"  (test subjects: {result['test_subjects']})")
    return "\n".join(lines)
