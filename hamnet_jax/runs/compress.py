"""`compress_run`: prune and/or quantize a trained run directory into a new one.

The new run directory is complete (config with the compacted model section, schema,
preprocessor, recalibrated interval scale, and `weights.safetensors`: the pruned weights
in sparse form, or the int8 / 4-bit codes with their scales), so `hamnet evaluate` and
`predict` run the compressed model itself; `summary.json` holds the measured
`OptimizationResult` and, under `test`, the metrics `hamnet evaluate` reports for the
run. Fine-tuning checkpoints under `checkpoints/<stage>` so a killed job
resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hamnet_jax.compression.optimize import compress_model, measure_compression
from hamnet_jax.config import PruningConfig, QuantizationConfig, TrainingConfig
from hamnet_jax.data.batch import Batch
from hamnet_jax.data.cohort_batches import model_input
from hamnet_jax.data.dataset import open_cohort, split_cohort
from hamnet_jax.errors import InputError
from hamnet_jax.runs.evaluate import prediction_metrics
from hamnet_jax.inference.compressed import CompressedModel
from hamnet_jax.inference.calibration import UNCALIBRATED, Calibration, fit_calibration
from hamnet_jax.inference.distilled_uncertainty import distillation_batch
from hamnet_jax.inference.predictor import predict_batch
from hamnet_jax.io_atomic import write_json_atomic
from hamnet_jax.job_dir import check_resume, data_identity, file_digest
from hamnet_jax.runs.distilled_fit import fit_run_distilled
from hamnet_jax.runs.run_dir import (WEIGHTS_FILE, Run, load_run, save_calibration, save_compressed_model, save_config,
                                     save_distilled, save_params)
from hamnet_jax.training.fit_options import FitOptions
from hamnet_jax.training.checkpoints import holds_checkpoints


def plot_layer_sparsity(report: dict[str, Any], path: Path) -> None:
    """Bar chart of the zero fraction of every prunable layer."""
    from hamnet_jax.training.plots import _pyplot

    plt = _pyplot()
    layers = report["layers"]
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.18 * len(layers))))
    ax.barh(list(layers), [v["sparsity"] for v in layers.values()])
    ax.set_xlabel("fraction of weights that are zero")
    ax.set_xlim(0, 1)
    ax.tick_params(axis="y", labelsize=6)
    ax.set_title(f"prunable sparsity {report['prunable_sparsity']:.1%}, total {report['total_sparsity']:.1%}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_run_splits(run_dir: str | os.PathLike, data_path: str | os.PathLike) -> tuple[Run, dict, dict[str, Batch]]:
    """A trained run, the raw train/val/test parts of `data_path` under the run's split,
    and their preprocessed batches: read through the source run's cohort cache (as its
    training read the file; `data.cache`), standardized a batch at a time."""
    run = load_run(run_dir)
    if not run.model_config.regression:  # their accuracy figures (MAE, its drop) are the regression head's
        raise InputError(f"{run_dir} is an outcome-only run (no regression head); pruning, quantization and "
                         "distillation measure and compare the regression head, so they take runs that have one")
    arrays = open_cohort(data_path, run.schema, run.config.data)
    parts = split_cohort(arrays, run.config.data)
    if min(parts[k].num_subjects for k in ("train", "val", "test")) == 0:
        raise InputError(f"{data_path}: the run's train/val/test split leaves a part empty")
    return run, parts, {k: model_input(run.preprocessor, v) for k, v in parts.items()}


def new_run_dir(run_dir: str | os.PathLike, out_dir: str | os.PathLike, resume: bool = False,
                data_path: str | os.PathLike | None = None, settings: dict[str, Any] | None = None) -> Path:
    """`out_dir` as a Path, refusing the source run itself and a non-empty directory
    (unless resuming, which needs the checkpoints a killed job left there, and the same
    source run, data and `settings` as recorded in its job.json: `job_dir.check_resume`)."""
    out = Path(out_dir)
    if out.resolve() == Path(run_dir).resolve():
        raise InputError("--out must be a new run directory, not the source run")
    if resume:
        if not holds_checkpoints(out / "checkpoints"):
            raise InputError(f"--resume: {out} holds no checkpoints to resume from; run without --resume")
    elif out.exists() and any(out.iterdir()):
        raise InputError(f"run directory {out} already exists and is not empty; choose another --out "
                         "(or pass --resume to continue a killed job)")
    if data_path is not None:
        summary = Path(run_dir) / "summary.json"
        source = {"path": str(Path(run_dir).resolve()),
                  "summary_sha256": file_digest(summary) if summary.exists() else None}
        check_resume(out, {"run": source, "data": data_identity(data_path), "config": settings or {}}, resume)
    return out


def job_settings(**sections: Any) -> dict[str, Any]:
    """A derived run's settings for its identity: each config section given, as a dict."""
    return {k: dataclasses.asdict(v) for k, v in sections.items() if v is not None}


def fit_options(out: Path, training: TrainingConfig, resume: bool, progress: bool,
                on_epoch: Callable[[str, dict], None] | None = None) -> FitOptions:
    """The loop options of a derived run: the source run's execution keys (with the command's
    overrides), checkpoints under `out/checkpoints/<stage>`, TensorBoard scalars under
    `out/tb/<stage>`, and `on_epoch(stage, record)` for each epoch."""
    return FitOptions(training=training, checkpoint_dir=out / "checkpoints", resume=resume, progress=progress,
                      log_dir=out / "tb", on_epoch=on_epoch)


def loop_summary(training: TrainingConfig) -> dict:
    """The execution keys the fine-tuning loop ran with (recorded in summary.json)."""
    return {"precision_mode": training.precision_mode, "gradient_accumulation_steps":
            training.gradient_accumulation_steps, "mesh": dict(training.mesh),
            "bucket_by_visits": training.bucket_by_visits}


def write_derived_run(out: Path, run_dir: str | os.PathLike, run: Run, parts: dict, batches: dict[str, Batch],
                      model: CompressedModel, compressed: bool) -> float:
    """A run directory for a model derived from `run` (same schema, preprocessing and split):
    config, weights (`weights.safetensors` when `compressed`: the pruned / quantized weights
    themselves; orbax `params/` otherwise), the calibration (interval scale, temperature) refitted on the
    validation part through the model's own execution path, which it returns, and the
    distilled MC spread refitted on it. The caller
    writes `summary.json` last, so its presence marks a finished run."""
    pre = run.preprocessor
    out.mkdir(parents=True, exist_ok=True)
    for name in ("schema.yaml", "preprocessor.npz", "data_profile.npz"):
        if (Path(run_dir) / name).exists():  # (runs trained before data profiles were kept have none)
            shutil.copy2(Path(run_dir) / name, out / name)
    save_config(out, run.config, model.config)
    if compressed:
        save_compressed_model(out, model)
    else:
        save_params(out, model.params)
    def mc(batch: Batch) -> dict:
        return predict_batch(model.config, model.params, batch, pre.target_mean, pre.target_std, UNCALIBRATED,
                             run.config.training.mc_samples, run.config.training.seed, apply_fn=model.apply_fn(),
                             visit_slots=run.config.data.max_visits)

    calibration = fit_calibration(parts["val"].targets, parts["val"].labels, mc(batches["val"]))
    save_calibration(out, calibration)
    fit_batch = distillation_batch(batches["train"], run.config.training.seed)
    save_distilled(out, fit_run_distilled(model.apply_fn(), model.params, fit_batch, batches, parts, pre, run.config,
                                          mc)[0])
    return calibration


def derived_test_metrics(run: Run, parts: dict, batches: dict[str, Batch], model: CompressedModel,
                         calibration: Calibration) -> dict[str, float]:
    """Test-split metrics of the derived model computed exactly as `hamnet evaluate` computes
    them on the written run (calibrated MC-dropout predictions on its own execution path)."""
    pre, training = run.preprocessor, run.config.training
    pred = predict_batch(model.config, model.params, batches["test"], pre.target_mean, pre.target_std, calibration,
                         training.mc_samples, training.seed, apply_fn=model.apply_fn(),
                         visit_slots=run.config.data.max_visits)
    return prediction_metrics(parts["test"], pred)


def compress_run(run_dir: str | os.PathLike, data_path: str | os.PathLike, out_dir: str | os.PathLike,
                 pruning: PruningConfig | None = None, quantization: QuantizationConfig | None = None,
                 training: TrainingConfig | None = None, resume: bool = False, progress: bool = False,
                 on_epoch: Callable[[str, dict], None] | None = None) -> dict:
    """Compress the run at `run_dir` on the same data split it was trained on; returns the
    summary written to `out_dir/summary.json`. Fine-tuning runs `fit` with `training`'s
    execution keys (default: the source run's), resumes after a crash with `resume`, and
    hands each epoch's record to `on_epoch(stage, record)`."""
    out = new_run_dir(run_dir, out_dir, resume, data_path,
                      job_settings(pruning=pruning, quantization=quantization, training=training))
    run, parts, batches = load_run_splits(run_dir, data_path)
    options = fit_options(out, training or run.config.training, resume, progress, on_epoch)
    model, pruning_report, quantization_report = compress_model(
        run.model_config, run.params, batches["train"], batches["val"], pruning, quantization, options)
    calibration = write_derived_run(out, run_dir, run, parts, batches, model, compressed=True)
    result = measure_compression(run.model, model, batches["test"], run.preprocessor.target_std,
                                 pruning=pruning_report, quantization=quantization_report)
    if result.pruning.get("sparsity"):
        plot_layer_sparsity(result.pruning["sparsity"], out / "plots" / "layer_sparsity.png")
    summary = {"source_run": str(run_dir), **result.summary(), **calibration.to_dict(),
               "test": derived_test_metrics(run, parts, batches, model, calibration),
               "weights_file": str(out / WEIGHTS_FILE), "weights_file_bytes": (out / WEIGHTS_FILE).stat().st_size}
    summary["loop"] = loop_summary(options.training)
    write_json_atomic(out / "summary.json", summary)
    return summary
