"""`HAMNetKnowledgeDistillation`: the original framework's distillation facade.

    from hamnet_jax.optimization.knowledge_distillation import (
        DistillationConfig, DistillationMethod, HAMNetKnowledgeDistillation)

    kd = HAMNetKnowledgeDistillation((teacher_config, teacher_params),
                                     DistillationConfig(method=DistillationMethod.SOFT_TARGET,
                                                        temperature=4.0, alpha=0.5,
                                                        intermediate_features=True, attention_maps=True))
    student = kd.create_student_model(compression_ratio=0.25)      # a HAMNet module
    params, result = kd.distill(train, val, compression_ratio=0.25, test_data=test)
    result.teacher_metrics, result.student_metrics, result.compression_ratio, result.speedup

Several teachers: pass a list of `(config, params)` pairs (combined by `teacher_weights`
or, with `teacher_mode="uncertainty"`, by per-subject precision). `SELF_DISTILLATION`
trains the student against an EMA of itself; `BORN_AGAIN` runs `generations` rounds in
which each round's student (the teacher's own architecture) teaches the next.

Thin: `transforms.distillation` holds the losses, `training.distill_step` the step,
`training.distill` the loop; this class builds the objective from the config and measures
teacher and student side by side (test metrics, throughput at one batch size, interleaved).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Any

import numpy as np

from hamnet_jax.data.batch import Batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.training.distill import distill_student
from hamnet_jax.training.distill_step import DistillSpec
from hamnet_jax.training.finetune import FinetuneConfig
from hamnet_jax.training.state import count_params
from hamnet_jax.transforms.compressed_model import CompressedModel, latency_ms, test_metrics
from hamnet_jax.transforms.student import student_config

__all__ = ["DistillationConfig", "DistillationMethod", "DistillationResult", "HAMNetKnowledgeDistillation"]


class DistillationMethod(enum.StrEnum):
    SOFT_TARGET = "soft_target"  # Gaussian KL on the regression head (+ T^2 KL on a class head)
    FEATURE_MATCHING = "feature_matching"  # FitNets, plus soft targets
    ATTENTION_TRANSFER = "attention_transfer"  # attention maps, plus soft targets
    RELATIONAL = "relational"  # Park et al. 2019 distance + angle, plus soft targets
    SELF_DISTILLATION = "self_distillation"  # EMA teacher of the student itself
    BORN_AGAIN = "born_again"  # generations of same-size students (Furlanello et al. 2018)


@dataclasses.dataclass(frozen=True)
class DistillationConfig:
    """Objective and budget. `alpha` weighs distillation against the task loss;
    `intermediate_features` / `attention_maps` / `relational` add FitNets, attention transfer
    and RKD terms to whatever the method is."""

    method: DistillationMethod = DistillationMethod.SOFT_TARGET
    temperature: float = 4.0
    alpha: float = 0.5
    intermediate_features: bool = False
    attention_maps: bool = False
    relational: bool = False
    feature_weight: float = 1.0
    attention_weight: float = 1.0
    relational_weight: float = 1.0
    teacher_weights: tuple[float, ...] | None = None
    teacher_mode: str = "weighted"
    ema_decay: float = 0.99
    generations: int = 2
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", DistillationMethod(self.method))
        if self.teacher_weights is not None:
            object.__setattr__(self, "teacher_weights", tuple(float(w) for w in self.teacher_weights))
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"DistillationConfig.alpha must be in [0, 1], got {self.alpha!r}")
        if self.temperature <= 0:
            raise ValueError(f"DistillationConfig.temperature must be > 0, got {self.temperature!r}")
        if self.generations < 1:
            raise ValueError(f"DistillationConfig.generations must be >= 1, got {self.generations!r}")
        self.spec(classification=False)  # validates the term weights and teacher_mode
        self.finetune_config()

    def spec(self, classification: bool, loss: str = "gaussian_nll") -> DistillSpec:
        terms: list[tuple[str, float]] = [("gaussian_kl", 1.0)]
        if classification:
            terms.append(("soft_target_kl", 1.0))
        m = self.method
        if self.intermediate_features or m is DistillationMethod.FEATURE_MATCHING:
            terms.append(("feature_matching", self.feature_weight))
        if self.attention_maps or m is DistillationMethod.ATTENTION_TRANSFER:
            terms.append(("attention_transfer", self.attention_weight))
        if self.relational or m is DistillationMethod.RELATIONAL:
            terms += [("rkd_distance", self.relational_weight), ("rkd_angle", 2.0 * self.relational_weight)]
        return DistillSpec(terms=tuple(terms), alpha=self.alpha, temperature=self.temperature,
                           teacher_mode=self.teacher_mode, teacher_weights=self.teacher_weights, loss=loss)

    def finetune_config(self) -> FinetuneConfig:
        return FinetuneConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                              weight_decay=self.weight_decay, seed=self.seed)


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


class HAMNetKnowledgeDistillation:
    """Distill one or several `(HAMNetConfig | HAMNet, params)` teachers into a smaller student."""

    def __init__(self, teacher: tuple[Any, Any] | Sequence[tuple[Any, Any]], config: DistillationConfig | None = None,
                 target_std: float = 1.0, throughput_batch_size: int = 256, latency_reps: int = 20) -> None:
        single = isinstance(teacher, tuple) and len(teacher) == 2 and isinstance(teacher[0], (HAMNet, HAMNetConfig))
        pairs = [teacher] if single else list(teacher)
        if not pairs:
            raise ValueError("HAMNetKnowledgeDistillation needs a teacher: a (config, params) pair or a list of them")
        self.teachers = [(m.config if isinstance(m, HAMNet) else m, p) for m, p in pairs]
        self.config = config or DistillationConfig()
        self.target_std = target_std
        self.throughput_batch_size = throughput_batch_size
        self.latency_reps = latency_reps

    @property
    def teacher_config(self) -> HAMNetConfig:
        return self.teachers[0][0]

    def create_student_model(self, compression_ratio: float = 0.25) -> HAMNet:
        """A smaller HAMNet whose parameter count is within 10% of `compression_ratio` x the
        (first) teacher's; self-distillation and born-again keep the teacher's architecture."""
        if self.config.method in (DistillationMethod.SELF_DISTILLATION, DistillationMethod.BORN_AGAIN):
            return HAMNet(self.teacher_config)
        return HAMNet(student_config(self.teacher_config, compression_ratio))

    def distill(self, train_data: Batch, val_data: Batch, compression_ratio: float = 0.25,
                test_data: Batch | None = None) -> tuple[Any, DistillationResult]:
        """(student params, result); metrics on `test_data` (else `val_data`)."""
        cfg = self.config
        student = self.create_student_model(compression_ratio).config
        spec = cfg.spec(self.teacher_config.classification)
        ft = cfg.finetune_config()
        if cfg.method is DistillationMethod.SELF_DISTILLATION:
            run = distill_student([], student, train_data, val_data, spec, ft, ema_decay=cfg.ema_decay)
            history = run.history
        elif cfg.method is DistillationMethod.BORN_AGAIN:
            teachers, history = self.teachers, []
            for generation in range(cfg.generations):
                run = distill_student(teachers, student, train_data, val_data, spec,
                                      dataclasses.replace(ft, seed=ft.seed + generation))
                history += [{**h, "generation": generation + 1} for h in run.history]
                teachers = [(student, run.params)]
        else:
            run = distill_student(self.teachers, student, train_data, val_data, spec, ft)
            history = run.history
        return run.params, self.measure(student, run.params, test_data or val_data, history, run.best_epoch)

    def measure(self, student: HAMNetConfig, params: Any, data: Batch, history: list[dict[str, float]],
                best_epoch: int) -> DistillationResult:
        teacher_cfg, teacher_params = self.teachers[0]
        predicts = {"teacher": CompressedModel(teacher_cfg, teacher_params).predict_fn(),
                    "student": CompressedModel(student, params).predict_fn()}
        metrics = {k: test_metrics(f, data, self.target_std) for k, f in predicts.items()}
        bs = min(self.throughput_batch_size, data.size)
        latency = latency_ms(predicts, data.take(np.arange(bs)), self.latency_reps)
        n_teacher, n_student = count_params(teacher_params), count_params(params)
        return DistillationResult(
            student_config=student, teacher_metrics=metrics["teacher"], student_metrics=metrics["student"],
            teacher_params=n_teacher, student_params=n_student, compression_ratio=n_teacher / n_student,
            teacher_samples_per_s=bs / latency["teacher"] * 1e3, student_samples_per_s=bs / latency["student"] * 1e3,
            speedup=latency["teacher"] / latency["student"], throughput_batch_size=bs, history=history,
            best_epoch=best_epoch)
