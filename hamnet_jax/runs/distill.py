"""`distill_run`: distill a trained run into a smaller student run directory.

The student trains on the teacher run's own split and preprocessing, through `fit` with the
run's execution keys (precision, mesh, accumulation; overridable) and checkpoints under
`checkpoints/`, so a killed job resumes with `resume=True`. The new directory is complete
(`hamnet evaluate`, `predict` and `export` work on it) and its `summary.json` holds the
measured `DistillationResult` (teacher and student test metrics, parameters, throughput)
plus the training history.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from hamnet_jax.compression.distillation import distill_model, measure_distillation
from hamnet_jax.runs.compress import (derived_test_metrics, fit_options, job_settings, load_run_splits,
                                     loop_summary, new_run_dir, write_derived_run)
from hamnet_jax.config import DistillationConfig, TrainingConfig
from hamnet_jax.inference.compressed import CompressedModel
from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import write_json_atomic
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.runs.run_dir import load_run


def distill_run(run_dir: str | os.PathLike, data_path: str | os.PathLike, out_dir: str | os.PathLike,
                config: DistillationConfig, compression_ratio: float | None = None,
                training: TrainingConfig | None = None, resume: bool = False, progress: bool = False,
                student: str | os.PathLike | HAMNetConfig | None = None,
                on_epoch: Callable[[str, dict], None] | None = None) -> dict:
    """Distill the run at `run_dir` into a student written to `out_dir`: an architecture
    `compression_ratio` (default `config.compression_ratio`) the teacher's size, or `student`:
    an architecture trained from scratch, or a trained run (on the same data) taught further
    from its weights. Each epoch's record goes to `on_epoch(stage, record)`."""
    out = new_run_dir(run_dir, out_dir, resume, data_path,
                      {**job_settings(distillation=config, training=training), "compression_ratio": compression_ratio,
                       "student": student if not isinstance(student, HAMNetConfig) else dataclasses.asdict(student)})
    run, parts, batches = load_run_splits(run_dir, data_path)
    ratio = config.compression_ratio if compression_ratio is None else compression_ratio
    options = fit_options(out, training or run.config.training, resume, progress, on_epoch)
    student_params = None
    if student is not None and not isinstance(student, HAMNetConfig):
        trained = load_run(student)
        if trained.model.mode is not None:
            raise InputError(f"distillation student {student}: an int8 run; teach a float run")
        student, student_params = trained.model_config, trained.params
    student, params, fitted = distill_model([(run.model_config, run.params)], config, batches["train"],
                                            batches["val"], ratio, options, student, student_params)
    model = CompressedModel(student, params)
    calibration = write_derived_run(out, run_dir, run, parts, batches, model, compressed=False)
    result = measure_distillation((run.model_config, run.params), student, params, batches["test"], fitted.history,
                                  fitted.best_epoch, run.preprocessor.target_std)
    summary = {"source_run": str(run_dir), "method": str(config.method), **result.summary(), **calibration.to_dict(),
               "test": derived_test_metrics(run, parts, batches, model, calibration)}
    summary["loop"] = loop_summary(options.training)
    write_json_atomic(out / "summary.json", summary)
    return summary
