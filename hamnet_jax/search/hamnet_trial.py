"""The HAMNet trial: train a search point for a budget of epochs and measure it.

    trial = functools.partial(hamnet_trial, data="cohort.parquet", config=base_config_dict)
    metrics = trial(point, budget, run_dir, trial_id)   # what run_study calls

A point sets `model:` keys (HAMNetConfig fields: the architecture) and `training:` keys
(TrainingConfig fields); any other key is an error naming it. The trial trains with
`training.num_epochs = budget` in `run_dir`; when the directory already holds checkpoints
(a trial promoted to a larger budget, or one interrupted) it resumes from them, so a
promotion pays only for the epochs it adds. Early stopping is off inside a trial unless
`early_stop_patience` is given (multi-fidelity schedulers decide how long a trial trains).
With `schedule_epochs` (the study's largest budget) the learning-rate schedule spans that
many epochs at every budget, so a trial promoted from 1 to 3 to 9 epochs trains exactly as
one trained for 9 epochs at once, and a low rung ranks the configurations as the top one
will (without it, each budget gets its own shorter schedule, restarted on promotion).

Metrics: `val_mae` and `val_loss` (best epoch, standardized target units: the training
loop's validation split, never the test split; an outcome-only model reports `val_loss` =
`val_log_loss` and no `val_mae`), `params`, `latency_ms` (batch-1 p50 of
the run's JAX predictor on this machine), `flops` (XLA's cost analysis of one batch-1
forward pass; both only with `measure_speed`, as they cost two compilations), `epochs`,
and the run's test metrics as `test_*` for reporting only.
A picklable module-level function, so process and Ray executors can run it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from hamnet_jax.config import config_from_dict
from hamnet_jax.config.run_config import Config
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.training.checkpoints import holds_checkpoints

TEST_METRICS = ("mae", "rmse", "r2", "pearson_r", "nll", "coverage_90", "age_gap_r", "auroc", "accuracy", "log_loss",
                "brier")
METRICS = ("val_mae", "val_loss", "val_log_loss", "epochs", "params", "latency_ms", "flops",
           *(f"test_{m}" for m in TEST_METRICS))

TRAINING_KEYS = ("learning_rate", "batch_size", "weight_decay", "warmup_epochs", "loss", "precision_mode",
                 "grad_clip_norm", "gradient_accumulation_steps", "classification_weight")


def check_metrics(names: list[str], what: str = "--objectives") -> None:
    """Objectives and constraints name metrics a trial reports; an unknown one is an error
    before any trial trains (not minutes later, after the first)."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise InputError(f"{what}: {unknown} not among the metrics a trial reports: {list(METRICS)}")


def apply_point(config: Config, point: dict[str, Any], budget: int, early_stop_patience: int = 0,
                schedule_epochs: int = 0) -> Config:
    model_fields = {f.name for f in dataclasses.fields(HAMNetConfig)}
    model = {k: v for k, v in point.items() if k in model_fields}
    training = {k: v for k, v in point.items() if k in TRAINING_KEYS}
    unknown = sorted(set(point) - set(model) - set(training))
    if unknown:
        raise InputError(f"search point: {unknown} are neither model keys nor searchable training keys "
                         f"({list(TRAINING_KEYS)})")
    training.update(num_epochs=int(budget), early_stop_patience=int(early_stop_patience),
                    schedule_epochs=max(int(schedule_epochs), int(budget)) if schedule_epochs else 0)
    return dataclasses.replace(config, model={**config.model, **model},
                               training=dataclasses.replace(config.training, **training))


def hamnet_trial(point: dict[str, Any], budget: int, run_dir: str | Path, trial: int, *, data: str,
                 config: dict[str, Any] | None = None, latency_reps: int = 50,
                 early_stop_patience: int = 0, measure_speed: bool | tuple[str, ...] = True,
                 schedule_epochs: int = 0) -> dict[str, Any]:
    """Train the point's run for `budget` epochs (continuing its checkpoints) and return its
    metrics; `measure_speed` adds latency_ms and flops (True), the ones it names, or neither.

    A study runs many trials in one process (the serial executor, or each worker). Every
    trial compiles its own programs, and each compiled program holds memory mappings for
    its code until JAX's caches let it go: without clearing them a base-tier trial left
    ~1,000 mappings behind, and a study process reached the kernel's limit (vm.max_map_count,
    65,530) after ~60 trial jobs, where LLVM fails with "Cannot allocate memory" and the
    process crashes. So the caches are cleared after each trial (the next trial's
    compilations come from the study's persistent compilation cache)."""
    import jax

    try:
        return _train_trial(point, budget, Path(run_dir), trial, data, config, latency_reps, early_stop_patience,
                            measure_speed, schedule_epochs)
    finally:
        jax.clear_caches()


def _train_trial(point: dict[str, Any], budget: int, run_dir: Path, trial: int, data: str,
                 config: dict[str, Any] | None, latency_reps: int, early_stop_patience: int,
                 measure_speed: bool | tuple[str, ...], schedule_epochs: int) -> dict[str, Any]:
    from hamnet_jax.data.schema import Schema, sidecar_path
    from hamnet_jax.runs.train import train_run

    schema_path = sidecar_path(data)
    if not schema_path.exists():
        raise InputError(f"search data {data}: its schema {schema_path} does not exist")
    run_config = apply_point(config_from_dict(config or {}, "search base config"), point, budget,
                             early_stop_patience, schedule_epochs)
    resume = holds_checkpoints(run_dir / "checkpoints")
    summary = train_run(data, Schema.load(schema_path), run_config, run_dir, resume=resume, progress=False,
                        distill_uncertainty=False)  # (a trial is measured, never served)
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    validated = [h for h in history if "val_loss" in h]
    if not validated:
        raise InputError(f"trial {trial}: {run_dir}/metrics.jsonl holds no validation metrics")
    # the best epoch's value of each validation metric the run's heads report (an
    # outcome-only model has val_log_loss and no val_mae)
    metrics = {k: min(h[k] for h in validated) for k in ("val_mae", "val_loss", "val_log_loss") if k in validated[-1]}
    metrics.update(epochs=summary["epochs_run"], **{f"test_{k}": v for k, v in summary["test"].items()})
    speed = ("latency_ms", "flops") if measure_speed is True else tuple(measure_speed or ())
    metrics.update(measure_run(run_dir, latency_reps if "latency_ms" in speed else 0, "flops" in speed))
    return metrics


def _run_model(run_dir: Path):
    from hamnet_jax.inference.raw_model import RawModel
    from hamnet_jax.runs.run_dir import load_run

    return RawModel.from_run(load_run(run_dir), 0)


def _latency_ms(raw, reps: int) -> float:
    """Batch-1 p50 milliseconds of the run's JAX predictor."""
    from hamnet_jax.evaluation.timing import request_latency
    from hamnet_jax.inference.predictors import JaxPredictor
    from hamnet_jax.inference.raw_inputs import random_raw

    return request_latency(JaxPredictor(raw, (1,)), random_raw(raw.spec, raw.preprocessor, 1, seed=0), 1,
                           reps=reps).p50


def run_latency_ms(run_dir: str | Path, reps: int = 200) -> float:
    """Batch-1 p50 latency of a run's model on this machine (comparisons measure again,
    side by side, rather than trusting numbers taken under other load)."""
    return _latency_ms(_run_model(Path(run_dir)), reps)


def measure_run(run_dir: Path, latency_reps: int = 50, flops: bool = True) -> dict[str, float]:
    """Parameter count, batch-1 latency (p50 ms; `latency_reps=0`: not measured) and the
    FLOPs XLA counts in the batch-1 program (from the lowered program: no compilation)."""
    import jax
    import numpy as np

    from hamnet_jax.inference.predictors import JaxPredictor
    from hamnet_jax.inference.raw_inputs import random_raw

    raw = _run_model(run_dir)
    out: dict[str, float] = {
        "params": int(sum(np.asarray(p).size for p in jax.tree_util.tree_leaves(raw.model.float_params())))}
    if latency_reps > 0:
        out["latency_ms"] = _latency_ms(raw, latency_reps)
    if flops:
        checked = JaxPredictor(raw, (1,)).validate(random_raw(raw.spec, raw.preprocessor, 1, seed=0))
        checked = {k: np.asarray(v) for k, v in checked.items()}
        cost = jax.jit(lambda arrays: raw(arrays)).lower(checked).cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        out["flops"] = float((cost or {}).get("flops", float("nan")))
    return out
