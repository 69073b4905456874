"""`FitOptions`: how the stages of a compression (pruning, QAT, distillation) run the one
training loop — with the run's precision, mesh, accumulation and bucketing, a checkpoint
folder per stage, and resume — so `hamnet prune / quantize / distill` behave like
`hamnet train` and a killed job resumes where it stopped."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import jax
from jax.sharding import Mesh

from hamnet_jax.config import TrainingConfig
from hamnet_jax.data.batch import Batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.training.loop import FitResult, epoch_steps, fit
from hamnet_jax.training.plan import DEFAULT_PLAN, Plan
from hamnet_jax.training.run_log import ScalarLog

WARMUP_FRACTION = 0.05  # of a fine-tuning stage's epochs


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """`training` supplies the execution keys (precision, mesh, accumulation, remat,
    attention kernel, bucketing); a stage sets its own epochs, batch size, learning rate
    and seed. Each stage checkpoints under `checkpoint_dir/<stage>` and, with `log_dir`,
    writes its epochs as TensorBoard scalars under `log_dir/<stage>`; `on_epoch(stage,
    record)` gets each epoch's record too (an experiment tracker's hook)."""

    training: TrainingConfig = TrainingConfig()
    checkpoint_dir: Path | None = None
    resume: bool = False
    progress: bool = False
    mesh: Mesh | None = None
    log_dir: Path | None = None
    on_epoch: Callable[[str, dict], None] | None = None
    stage_name: str = ""

    def stage(self, name: str) -> FitOptions:
        """The options of a named sub-stage (its own checkpoint folder)."""
        return dataclasses.replace(
            self, checkpoint_dir=None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / name,
            log_dir=None if self.log_dir is None else Path(self.log_dir) / name,
            stage_name=f"{self.stage_name}/{name}" if self.stage_name else name)

    def config(self, epochs: int, batch_size: int, learning_rate: float, seed: int,
               weight_decay: float | None = None) -> TrainingConfig:
        """The stage's TrainingConfig: its budget on the run's execution keys; no early
        stopping (the best validation epoch is kept) and a short warmup."""
        return dataclasses.replace(
            self.training, num_epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
            weight_decay=self.training.weight_decay if weight_decay is None else weight_decay,
            early_stop_patience=0, warmup_epochs=WARMUP_FRACTION * epochs, memory_budget_mb=0.0)

    def fit(self, model_config: HAMNetConfig, cfg: TrainingConfig, train: Batch, val: Batch,
            plan: Plan = DEFAULT_PLAN) -> FitResult:
        scalars = ScalarLog(self.log_dir) if self.log_dir is not None and jax.process_index() == 0 else None
        sinks = [scalars.log] if scalars is not None else []
        if self.on_epoch is not None:
            sinks.append(lambda record: self.on_epoch(self.stage_name, record))
        try:
            return fit(model_config, cfg, train, val, checkpoint_dir=self.checkpoint_dir, resume=self.resume,
                       progress=self.progress, mesh=self.mesh, plan=plan,
                       on_epoch=(lambda record: [sink(record) for sink in sinks]) if sinks else None)
        finally:
            if scalars is not None:
                scalars.close()

    def steps_per_epoch(self, cfg: TrainingConfig, num_subjects: int) -> int:
        """Optimizer steps per epoch `fit` will take (schedules in steps need it)."""
        return epoch_steps(cfg, num_subjects, self.mesh)
