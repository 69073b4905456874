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
or, with `teacher_mode="uncertainty"`, by per-subject precision). Thin: the work is in
`hamnet_jax.compression.distillation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hamnet_jax.compression.distillation import (DistillationResult, distill_model, measure_distillation,
                                                 student_architecture)
from hamnet_jax.config import DistillationConfig, DistillationMethod
from hamnet_jax.data.batch import Batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.training.fit_options import FitOptions

__all__ = ["DistillationConfig", "DistillationMethod", "DistillationResult", "HAMNetKnowledgeDistillation"]


class HAMNetKnowledgeDistillation:
    """Distill one or several `(HAMNetConfig | HAMNet, params)` teachers into a smaller student."""

    def __init__(self, teacher: tuple[Any, Any] | Sequence[tuple[Any, Any]], config: DistillationConfig | None = None,
                 target_std: float = 1.0, throughput_batch_size: int = 256, latency_reps: int = 20,
                 options: FitOptions | None = None) -> None:
        single = isinstance(teacher, tuple) and len(teacher) == 2 and isinstance(teacher[0], (HAMNet, HAMNetConfig))
        pairs = [teacher] if single else list(teacher)
        if not pairs:
            raise ValueError("HAMNetKnowledgeDistillation needs a teacher: a (config, params) pair or a list of them")
        self.teachers = [(m.config if isinstance(m, HAMNet) else m, p) for m, p in pairs]
        self.config = config or DistillationConfig()
        self.target_std = target_std
        self.throughput_batch_size = throughput_batch_size
        self.latency_reps = latency_reps
        self.options = options or FitOptions()

    @property
    def teacher_config(self) -> HAMNetConfig:
        return self.teachers[0][0]

    def create_student_model(self, compression_ratio: float | None = None) -> HAMNet:
        """A smaller HAMNet whose parameter count is within 10% of `compression_ratio` (default:
        the config's) x the (first) teacher's; self-distillation and born-again keep the
        teacher's architecture."""
        return HAMNet(student_architecture(self.teacher_config, self.config, self._ratio(compression_ratio)))

    def _ratio(self, compression_ratio: float | None) -> float:
        return self.config.compression_ratio if compression_ratio is None else compression_ratio

    def distill(self, train_data: Batch, val_data: Batch, compression_ratio: float | None = None,
                test_data: Batch | None = None) -> tuple[Any, DistillationResult]:
        """(student params, result); metrics on `test_data` (else `val_data`)."""
        student, params, run = distill_model(self.teachers, self.config, train_data, val_data,
                                             self._ratio(compression_ratio),
                                             self.options)
        result = measure_distillation(self.teachers[0], student, params, test_data or val_data, run.history,
                                      run.best_epoch, self.target_std, self.throughput_batch_size,
                                      self.latency_reps)
        return params, result
