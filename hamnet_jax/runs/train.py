"""`train_run`: train HAMNet on a data file and write a complete run directory.

The thin `hamnet train` command calls this; so can scripts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hamnet_jax.config import Config, TrainingConfig
from hamnet_jax.config.run_config import resolve_auto_tier
from hamnet_jax.data.arrays import check_trainable
from hamnet_jax.data.cohort_batches import model_input
from hamnet_jax.data.dataset import open_cohort, split_cohort
from hamnet_jax.data.preprocess import Preprocessor
from hamnet_jax.data.profile import DataProfile, profile_subjects
from hamnet_jax.data.schema import Schema
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, param_shapes
from hamnet_jax.runs.evaluate import prediction_metrics
from hamnet_jax.inference.calibration import UNCALIBRATED, Calibration, fit_calibration
from hamnet_jax.inference.distilled_uncertainty import distillation_batch
from hamnet_jax.inference.predictor import compile_predict_ahead, mc_packing_rows, predict_batch, primary_output
from hamnet_jax.io_atomic import write_json_atomic
from hamnet_jax.job_dir import check_resume, data_identity
from hamnet_jax.runs.distilled_fit import fit_run_distilled
from hamnet_jax.runs.run_dir import save_calibration, save_config, save_distilled, save_params
from hamnet_jax.training.checkpoints import Checkpoints, holds_checkpoints
from hamnet_jax.training.loop import FitResult, fit
from hamnet_jax.training.plan import DEFAULT_PLAN, Plan
from hamnet_jax.training.regularized_step import (regularized_model_config, regularized_plan,
                                                 regularized_weight_decay)
from hamnet_jax.training.plots import plot_learning_curve, plot_pred_vs_true, plot_reliability
from hamnet_jax.training.run_log import RunLog
from hamnet_jax.training.wide_start import fitted_plan
from hamnet_jax.transforms.regularization import RegularizationConfig

log = logging.getLogger("hamnet_jax")


def regularization_config(config: Config) -> RegularizationConfig:
    """The transforms' RegularizationConfig from the keys the `regularization:` section gives."""
    section = config.sections["regularization"]
    try:
        return RegularizationConfig(**{k: getattr(section, k) for k in config.given.get("regularization", ())})
    except ValueError as e:
        raise InputError(f"regularization: {e}") from None


def training_plan(config: Config, model_config: HAMNetConfig) -> tuple[HAMNetConfig, TrainingConfig, Plan]:
    """What `fit` trains: plain training, or with a `regularization:` section the regularized
    objective, model (dropout kind, VIB) and optimizer (weight decay, spectral norm)."""
    if "regularization" not in config.sections:
        return model_config, config.training, DEFAULT_PLAN
    reg = regularization_config(config)
    model_config = regularized_model_config(model_config, reg)
    training = dataclasses.replace(config.training, weight_decay=regularized_weight_decay(reg))
    log.info("regularized training: %s", ", ".join(t.value for t in reg.enabled_techniques))
    return model_config, training, regularized_plan(reg, model_config, loss=training.loss,
                                                    class_weight=training.classification_weight)


def task_heads(schema: Schema, config: Config) -> dict[str, bool]:
    """The heads the data asks for: a regression head for the schema's target; a schema with
    an outcome and no target trains the classification head alone (outcome-only)."""
    if schema.target:
        return {}  # (reading labelled data has already refused a schema with neither column)
    if config.model.get("classification") is False:
        raise InputError(f"model.classification is false, but the schema names no 'target': an outcome-only "
                         f"model ({schema.outcome!r}) is its classification head")
    return {"regression": False, "classification": True}


def run_identity(data_path: str | os.PathLike, schema: Schema, config: Config) -> dict[str, Any]:
    """What a run was trained from, as its job.json records it: the data (by content), the
    schema and the config. A resume, or a reuse of a finished run, must bring the same."""
    return {"data": data_identity(data_path), "schema": schema.to_dict(), "config": config.identity()}


def reusable_run(out_dir: str | os.PathLike, data_path: str | os.PathLike, schema: Schema, config: Config) -> bool:
    """Whether `out_dir` holds a finished run (its summary.json) that a caller may reuse
    instead of training: one trained from other data, schema or config is refused (an
    InputError naming each difference), never reused; False when there is none."""
    out = Path(out_dir)
    if not (out / "summary.json").exists():
        return False
    check_resume(out, run_identity(data_path, schema, config), resume=True)
    return True


def train_run(data_path: str | os.PathLike, schema: Schema, config: Config, out_dir: str | os.PathLike,
              resume: bool = False, progress: bool = True,
              on_epoch: Callable[[dict[str, Any]], None] | None = None,
              distill_uncertainty: bool = True) -> dict[str, Any]:
    """Train, calibrate, evaluate on the test split; returns the summary (also summary.json).
    `on_epoch` gets each epoch's record plus its wall `seconds` (validation included) and the
    training `samples` it saw (for a metrics exporter; metrics.jsonl stays deterministic).
    `distill_uncertainty`: fit the distilled MC spread the run is served with (a search
    trial, never served, skips it; it is then served with MC dropout)."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not resume and (out / "checkpoints").exists():
        raise InputError(f"run directory {out} already holds a run; pass --resume to continue it "
                         "or choose another --out")
    if resume and not holds_checkpoints(out / "checkpoints"):
        raise InputError(f"--resume: {out} holds no checkpoints to resume from; run without --resume")
    primary = jax.process_index() == 0  # in a multi-process job, process 0 writes the run directory
    if primary:  # the data (by content), schema and config a --resume must bring again
        check_resume(out, run_identity(data_path, schema, config), resume)
    out.mkdir(parents=True, exist_ok=True)
    run = _prepare(data_path, schema, config, out)
    if primary:
        schema.save(out / "schema.yaml")
        run.pre.save(out / "preprocessor.npz")
        save_config(out, run.config, run.model_config)
    batches = {k: model_input(run.pre, v) for k, v in run.parts.items()}
    training = run.training
    plan = run.plan
    if training.wide_start == "fitted":
        plan = fitted_plan(plan, run.model_config, batches["train"], training.seed, start_params=not resume)
    # the MC-dropout programs of the predictions after training (~5 s to compile for the
    # standard tier) compile on a background thread while training starts
    predict_args = dict(num_samples=training.mc_samples, seed=training.seed, visit_slots=run.config.data.max_visits)
    # one program for the validation and test splits and the training subjects the MC spread is distilled on
    fit_batch = distillation_batch(batches["train"], training.seed) if distill_uncertainty else None
    predict_args["packed_rows"] = mc_packing_rows(
        [b for b in (batches["val"], batches["test"], fit_batch) if b is not None], training.mc_samples,
        visit_slots=run.config.data.max_visits)
    shapes = param_shapes(HAMNet(run.model_config), batches["val"].take(np.arange(1)))
    compiling_mc = compile_predict_ahead(run.model_config, shapes, batches["val"], **predict_args)
    result = _fit_logged(run, batches, plan, out, resume, progress, on_epoch, primary)
    if primary:
        save_params(out, result.params)

    def predict(batch: Any, calibration: Calibration = UNCALIBRATED) -> dict[str, np.ndarray]:
        return predict_batch(run.model_config, result.params, batch, run.pre.target_mean, run.pre.target_std,
                             calibration, **predict_args)

    compiling_mc.wait()  # (a call now would compile it a second time)
    val_pred = predict(batches["val"])
    if primary:  # the training distribution, for `hamnet drift` and the service's drift metrics
        profile = DataProfile.fit(profile_subjects(run.parts["train"], training.seed), schema)
        profile.with_predictions(val_pred[primary_output(val_pred)]).save(out / "data_profile.npz")
    calibration = fit_calibration(run.parts["val"].targets, run.parts["val"].labels, val_pred)
    test_pred = predict(batches["test"], calibration)
    summary: dict[str, Any] = {"test": prediction_metrics(run.parts["test"], test_pred)}
    if distill_uncertainty:
        distilled, distilled_test = fit_run_distilled(HAMNet(run.model_config).apply, result.params, fit_batch,
                                                      batches, run.parts, run.pre, run.config, predict)
        summary["test_distilled_uncertainty"] = prediction_metrics(run.parts["test"], distilled_test)
    summary.update({
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history), "stopped_early": result.stopped_early, **calibration.to_dict(),
        "subjects": {k: v.num_subjects for k, v in run.parts.items()}, "model": dataclasses.asdict(run.model_config),
        "batch_size": result.batch_size,
        "padding_fraction": result.history[-1].get("padding_fraction") if result.history else None,
    })
    if primary:
        save_calibration(out, calibration)
        if distill_uncertainty:
            save_distilled(out, distilled)
        write_json_atomic(out / "summary.json", summary)
        _plots(result, run, schema, test_pred, out)
    return summary


@dataclasses.dataclass
class _Prepared:
    """A run's data and what it trains: the config (its tier resolved), the splits, the
    preprocessor fitted on the training split, the model config, the training section and plan."""

    config: Config
    parts: dict[str, Any]
    pre: Preprocessor
    model_config: HAMNetConfig
    training: TrainingConfig
    plan: Plan


def _prepare(data_path: str | os.PathLike, schema: Schema, config: Config, out: Path) -> _Prepared:
    """Read and split the data, fit the preprocessor, and check that the data trains the
    configured model (errors name the field or column)."""
    arrays = open_cohort(data_path, schema, config.data)
    parts = split_cohort(arrays, config.data)
    if parts["val"].num_subjects == 0 or parts["test"].num_subjects == 0:
        raise InputError(f"too few subjects ({arrays.num_subjects}) for a train/val/test split of "
                         f"{config.data.split}")
    config = resolve_auto_tier(config, parts["train"].num_subjects)
    levels = [schema.categorical[c] for c in schema.categorical_columns]
    pre = Preprocessor.fit(parts["train"], levels)
    model_config = config.model_config(
        **{f"{m}_dim": w for m, w in schema.widths().items()}, lifestyle_cardinalities=schema.cardinalities(),
        subject_level=schema.subject_level, **task_heads(schema, config),
    )
    if not model_config.regression:
        unused = [k for k in ("loss", "classification_weight") if k in config.given.get("training", ())]
        if unused:
            raise InputError(f"training.{unused[0]}: applies to the regression head, and this outcome-only model "
                             f"({schema.outcome!r}, no target) has none")
    model_config, training, plan = training_plan(config, model_config)
    if model_config.classification and not np.isfinite(arrays.labels).any():
        raise InputError("model.classification is set but the schema names no 'outcome' column with values")
    check_trainable(arrays, schema, outcome=model_config.classification)
    return _Prepared(config, parts, pre, model_config, training, plan)


def _fit_logged(run: _Prepared, batches: dict[str, Any], plan: Plan, out: Path, resume: bool, progress: bool,
                on_epoch: Callable[[dict[str, Any]], None] | None, primary: bool) -> FitResult:
    """`fit`, each epoch logged to metrics.jsonl (process 0) and passed to `on_epoch` with its
    wall seconds and samples. On resume the log restarts from the checkpoint's history, its
    source of truth."""
    meta = None
    if resume:
        ckpt = Checkpoints(out / "checkpoints")
        meta = ckpt.read_meta()
        ckpt.close()
    runlog = RunLog(out, meta["history"] if meta else []) if primary else None
    clock = [time.perf_counter()]

    def log_epoch(record: dict[str, Any]) -> None:
        if runlog:
            runlog.log_epoch(record)
        if on_epoch:
            now = time.perf_counter()
            on_epoch({**record, "seconds": now - clock[0], "samples": int(run.parts["train"].num_subjects)})
            clock[0] = now

    try:
        return fit(run.model_config, run.training, batches["train"], batches["val"],
                   checkpoint_dir=out / "checkpoints", resume=resume,
                   on_epoch=log_epoch if runlog or on_epoch else None, progress=progress, plan=plan)
    finally:
        if runlog:
            runlog.close()


def _plots(result: FitResult, run: _Prepared, schema: Schema, test_pred: dict[str, np.ndarray], out: Path) -> None:
    plot_learning_curve(result.history, out / "plots" / "learning_curve.png", result.best_epoch,
                        *(() if run.model_config.regression else ("log loss of the outcome",)))
    if run.model_config.regression:
        plot_pred_vs_true(run.parts["test"].targets, test_pred["prediction"], test_pred["lower_90"],
                          test_pred["upper_90"], out / "plots" / "pred_vs_true.png", label=schema.target or "target")
    if run.model_config.classification:
        plot_reliability(run.parts["test"].labels, test_pred["outcome_probability"],
                         out / "plots" / "reliability.png", label=schema.outcome or "outcome")
