"""Knowledge distillation of one or several teachers into a smaller student, measured.

`distillation_spec` turns a `DistillationConfig` into the objective; `distill_model` trains
the student through `fit` (`distill_student`: precision, mesh, accumulation, checkpoints
and resume as for training); `measure_distillation` puts teacher and student side by side
(test metrics, throughput at one batch size, interleaved). The original
`HAMNetKnowledgeDistillation` facade calls these. Self-distillation trains against an EMA of
the student; born-again runs `generations` rounds in which each round's student (the
teacher's architecture) teaches the next.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from hamnet_jax.compression.distill_student import distill_student
from hamnet_jax.compression.student import student_config
from hamnet_jax.config import DistillationConfig, DistillationMethod, TrainingConfig
from hamnet_jax.data.batch import Batch
from hamnet_jax.errors import InputError
from hamnet_jax.evaluation.metrics import point_metrics
from hamnet_jax.evaluation.timing import latency_ms
from hamnet_jax.inference.compressed import CompressedModel
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.training.distill_step import DistillSpec
from hamnet_jax.training.fit_options import FitOptions
from hamnet_jax.training.state import count_params

Teachers = Sequence[tuple[HAMNetConfig, Any]]


def distillation_spec(cfg: DistillationConfig, classification: bool, loss: str = "gaussian_nll",
                      regression: bool = True) -> DistillSpec:
    """The objective's terms: soft targets of every head the teacher has (the predictive
    Gaussian, the class probability), plus what the method and switches add."""
    terms: list[tuple[str, float]] = [("gaussian_kl", 1.0)] if regression else []
    if classification:
        terms.append(("soft_target_kl", 1.0))
    m = cfg.method
    if cfg.intermediate_features or m is DistillationMethod.FEATURE_MATCHING:
        terms.append(("feature_matching", cfg.feature_weight))
    if cfg.attention_maps or m is DistillationMethod.ATTENTION_TRANSFER:
        terms.append(("attention_transfer", cfg.attention_weight))
    if cfg.relational or m is DistillationMethod.RELATIONAL:
        terms += [("rkd_distance", cfg.relational_weight), ("rkd_angle", 2.0 * cfg.relational_weight)]
    return DistillSpec(terms=tuple(terms), alpha=cfg.alpha, temperature=cfg.temperature,
                       teacher_mode=cfg.teacher_mode, teacher_weights=cfg.teacher_weights, loss=loss)


# what a student must share with its teacher: the inputs and heads the data decides
SHARED_WITH_TEACHER = ("clinical_dim", "imaging_dim", "genetic_dim", "lifestyle_dim", "lifestyle_cardinalities",
                       "regression", "classification", "subject_level")


def student_architecture(teacher: HAMNetConfig, cfg: DistillationConfig, compression_ratio: float,
                         student: HAMNetConfig | None = None) -> HAMNetConfig:
    """The student's config: the teacher's for self-distillation and born-again; else
    `student` when given (an architecture of the user's or a search's, on the same data);
    else the sizing rule of `student_config` (parameters within 10% of ratio x teacher)."""
    if student is None:
        return teacher if cfg.keeps_architecture else student_config(teacher, compression_ratio)
    if cfg.keeps_architecture:
        raise InputError(f"distillation.method {cfg.method.value} trains the teacher's own architecture; "
                         "a given student architecture does not apply")
    differs = [f for f in SHARED_WITH_TEACHER if getattr(student, f) != getattr(teacher, f)]
    if differs:
        raise InputError(f"distillation student: its {', '.join(differs)} differ from the teacher's; a student "
                         "takes the teacher's data (inputs and heads)")
    return student


def stage_config(cfg: DistillationConfig, options: FitOptions) -> TrainingConfig:
    return options.config(cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.seed, cfg.weight_decay)


@dataclasses.dataclass
class DistillationResult:
    """Measured outcome. `compression_ratio` = teacher params / student params (e.g. 3.9x);
    `speedup` = student / teacher samples per second at `throughput_batch_size`."""

    student_config: HAMNetConfig
    teacher_metrics: dict[str, float]
    student_metrics: dict[str, float]
    teacher_params: int
    student_params: int
    compression_ratio: float
    teacher_samples_per_s: float
    student_samples_per_s: float
    speedup: float
    throughput_batch_size: int
    history: list[dict[str, float]]
    best_epoch: int

    @property
    def teacher_accuracy(self) -> float:
        """The original framework's name; for the regression head it is the test R^2."""
        return self.teacher_metrics["r2"]

    @property
    def student_accuracy(self) -> float:
        return self.student_metrics["r2"]

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "student_config"}
        out["student_config"] = self.student_config.to_dict()
        return out


def distill_model(teachers: Teachers, cfg: DistillationConfig, train: Batch, val: Batch,
                  compression_ratio: float, options: FitOptions | None = None,
                  student: HAMNetConfig | None = None,
                  student_params: Any = None) -> tuple[HAMNetConfig, Any, Any]:
    """(student config, student params, the last generation's `FitResult` with its history);
    `student` fixes the student's architecture (else `compression_ratio` sizes it) and
    `student_params` its starting weights (a trained student taught further; else a fresh one)."""
    if student_params is not None and (student is None or cfg.method in (DistillationMethod.SELF_DISTILLATION,
                                                                        DistillationMethod.BORN_AGAIN)):
        raise InputError("distillation: starting weights need the student's architecture (student=...) and a "
                         "teacher method (not self_distillation or born_again)")
    options = options or FitOptions()
    teacher_config = teachers[0][0]
    if cfg.teacher_mode == "uncertainty" and not teacher_config.regression:
        raise InputError("distillation.teacher_mode: 'uncertainty' weights teachers by their predicted variance; "
                         "outcome-only teachers have none (use 'weighted')")
    student = student_architecture(teacher_config, cfg, compression_ratio, student)
    spec = distillation_spec(cfg, teacher_config.classification, regression=teacher_config.regression)
    train_cfg = stage_config(cfg, options)
    if cfg.method is DistillationMethod.SELF_DISTILLATION:
        run = distill_student([], student, train, val, spec, train_cfg, ema_decay=cfg.ema_decay, options=options)
        return student, run.params, run
    if cfg.method is DistillationMethod.BORN_AGAIN:
        current, history = list(teachers), []
        for generation in range(cfg.generations):
            run = distill_student(current, student, train, val, spec,
                                  dataclasses.replace(train_cfg, seed=train_cfg.seed + generation),
                                  options=options.stage(f"generation{generation + 1}"))
            history += [{**h, "generation": generation + 1} for h in run.history]
            current = [(student, run.params)]
        run.history = history
        return student, run.params, run
    run = distill_student(teachers, student, train, val, spec, train_cfg, student_params=student_params,
                          options=options)
    return student, run.params, run


def measure_distillation(teacher: tuple[HAMNetConfig, Any], student: HAMNetConfig, params: Any, data: Batch,
                         history: list[dict[str, float]], best_epoch: int, target_std: float = 1.0,
                         throughput_batch_size: int = 256, reps: int = 20) -> DistillationResult:
    teacher_cfg, teacher_params = teacher
    predicts = {"teacher": CompressedModel(teacher_cfg, teacher_params).predict_fn(),
                "student": CompressedModel(student, params).predict_fn()}
    metrics = {k: point_metrics(f, data, target_std) for k, f in predicts.items()}
    bs = min(throughput_batch_size, data.size)
    latency = latency_ms(predicts, data.take(np.arange(bs)), reps)
    n_teacher, n_student = count_params(teacher_params), count_params(params)
    return DistillationResult(
        student_config=student, teacher_metrics=metrics["teacher"], student_metrics=metrics["student"],
        teacher_params=n_teacher, student_params=n_student, compression_ratio=n_teacher / n_student,
        teacher_samples_per_s=bs / latency["teacher"] * 1e3, student_samples_per_s=bs / latency["student"] * 1e3,
        speedup=latency["teacher"] / latency["student"], throughput_batch_size=bs, history=history,
        best_epoch=best_epoch)
