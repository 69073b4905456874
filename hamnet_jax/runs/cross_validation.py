"""k-fold cross-validation: HAMNet and the baselines on every fold, mean ± sd per metric.

A 15% test split of a 400-subject cohort is 60 people; its MAE moves by several percent
with the split seed. Cross-validation tests every subject once: fold k's run is an ordinary
run directory (`OUT/fold-k`) whose config says `data.cv_folds` / `data.cv_fold`, so
`hamnet evaluate`, `predict` and `export` treat it like any other run, with fold k as its
test set and the other subjects split into training and validation (for early stopping)
by `data.split`'s train:val ratio (`data.split.kfold_split`).

A crash resumes where it stopped: finished folds (their `eval.json`) are kept, a fold
interrupted in training resumes from its checkpoint. `OUT/cv_plan.json` records the data
file, fold count, config and schema, so a rerun with other settings into the same directory
is refused rather than mixing folds trained differently.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hamnet_jax.config import Config
from hamnet_jax.data.schema import Schema
from hamnet_jax.errors import InputError
from hamnet_jax.job_dir import data_identity
from hamnet_jax.runs.evaluate import COLUMNS, evaluate_run
from hamnet_jax.io_atomic import write_json_atomic
from hamnet_jax.runs.run_dir import load_run
from hamnet_jax.runs.train import train_run
from hamnet_jax.training.checkpoints import holds_checkpoints


def fold_config(config: Config, folds: int, fold: int) -> Config:
    return dataclasses.replace(config, data=dataclasses.replace(config.data, cv_folds=folds, cv_fold=fold))


def _check_plan(out: Path, plan: dict[str, Any]) -> None:
    path = out / "cv_plan.json"
    plan = json.loads(json.dumps(plan))  # compared as it reads back (tuples become lists)
    if path.exists():
        before = json.loads(path.read_text())
        if before != plan:
            changed = sorted(k for k in plan if before.get(k) != plan[k])
            raise InputError(f"{out} holds a cross-validation with other settings ({', '.join(changed)}: "
                             f"{[before.get(k) for k in changed]} there); choose another --out")
    else:
        write_json_atomic(path, plan)


def _train_fold(data_path: str | os.PathLike, schema: Schema, config: Config, fold_dir: Path, progress: bool) -> None:
    if (fold_dir / "summary.json").exists():
        return
    resume = holds_checkpoints(fold_dir / "checkpoints")
    train_run(data_path, schema, config, fold_dir, resume=resume, progress=progress)


def summarize_folds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model (rows present in every fold) and metric: the fold values, mean and sd (ddof 1)."""
    names = [n for n in results[0]["rows"] if all(n in r["rows"] for r in results)]
    models: dict[str, dict[str, Any]] = {}
    for name in names:
        models[name] = {}
        for metric in COLUMNS:
            values = np.array([r["rows"][name].get(metric, np.nan) for r in results], np.float64)
            if np.isnan(values).all():
                continue
            models[name][metric] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)),
                                    "folds": values.tolist()}
    return {"folds": len(results), "test_subjects": [r["test_subjects"] for r in results], "models": models}


def cross_validate(data_path: str | os.PathLike, schema: Schema, config: Config, out_dir: str | os.PathLike,
                   folds: int = 5, baselines: bool = True, baseline_features: str = "all-visits",
                   progress: bool = True, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train and evaluate fold 0..folds-1 into `out_dir/fold-k`; writes and returns `cv.json`."""
    if folds < 2:
        raise InputError(f"--folds {folds}: cross-validation needs at least 2 folds")
    say = say or (lambda _: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_plan(out, {"data": data_identity(data_path), "folds": folds, "config": config.to_dict(),
                      "schema": schema.to_dict(), "baselines": baselines, "baseline_features": baseline_features})
    results = []
    for k in range(folds):
        fold_dir = out / f"fold-{k}"
        if not (fold_dir / "eval.json").exists():
            say(f"fold {k + 1}/{folds}: training")
            _train_fold(data_path, schema, fold_config(config, folds, k), fold_dir, progress)
            say(f"fold {k + 1}/{folds}: evaluating")
            result = evaluate_run(load_run(fold_dir), data_path, baselines=baselines,
                                  baseline_features=baseline_features, progress=say)
            write_json_atomic(fold_dir / "eval.json", result)
        results.append(json.loads((fold_dir / "eval.json").read_text()))
    summary = summarize_folds(results)
    write_json_atomic(out / "cv.json", summary)
    return summary


CV_TABLE_METRICS = ("mae", "rmse", "r2", "coverage_90", "auroc", "log_loss", "brier")


def format_cv_table(summary: dict[str, Any], metrics: tuple[str, ...] | None = None) -> str:
    """mean ± sd per model of `metrics` (default: those of CV_TABLE_METRICS some model has:
    the regression and / or the classification metrics)."""
    if metrics is None:
        metrics = tuple(m for m in CV_TABLE_METRICS if any(m in row for row in summary["models"].values()))
    head = f"{'model':<34}" + "".join(f"{m:>20}" for m in metrics)
    lines = [f"{summary['folds']}-fold cross-validation (mean ± sd over folds; test subjects per fold "
             f"{summary['test_subjects']})", head, "-" * len(head)]
    for name, row in summary["models"].items():
        cells = [f"{row[m]['mean']:.4f} ± {row[m]['sd']:.4f}" if m in row else "-" for m in metrics]
        lines.append(f"{name:<34}" + "".join(f"{c:>20}" for c in cells))
    return "\n".join(lines)
