"""`Plan`: what one call of `fit` trains — where the params start, which objective the step
runs, how the optimizer and the model's apply are wrapped — so training, pruning-aware
fine-tuning, quantization-aware fine-tuning, distillation and regularized training are one
loop with the same precision, mesh, accumulation, bucketing, checkpoints and resume.

The default plan is plain training from a fresh initialization.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optax

from hamnet_jax.training.state import TrainState, identity
from hamnet_jax.training.steps import LossFn


@dataclasses.dataclass(frozen=True)
class Plan:
    """`init_params`: start from these (None: the model's seeded init); `wrap_apply(apply)`:
    the apply the step and validation run (fake quantization, regularizer interceptors);
    `wrap_tx(tx)`: the optimizer (e.g. `prune_optax` keeping masks in its state);
    `objective(params, state, batch, key)`: the loss (default: the task loss);
    `after_update(state)`: e.g. the EMA teacher of self-distillation; `state_cls` /
    `state_fields`: a TrainState subclass and its extra fields (teachers);
    `eval_params(params)`: the model params inside the trained tree (validation and the
    result); `first_eligible_epoch`: epochs before it are never kept as best (a pruning
    schedule still ramping up); `weight_averaging`: whether `training.weight_average_epochs`
    applies (not while pruning: an average of weights a growing mask just zeroed is not zero)."""

    init_params: Any = None
    wrap_apply: Callable[[Callable], Callable] = identity
    wrap_tx: Callable[[optax.GradientTransformation], optax.GradientTransformation] = identity
    objective: LossFn | None = None
    after_update: Callable[[TrainState], TrainState] | None = None
    state_cls: type[TrainState] = TrainState
    state_fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    eval_params: Callable[[Any], Any] = identity
    first_eligible_epoch: int = 1
    weight_averaging: bool = True


DEFAULT_PLAN = Plan()
