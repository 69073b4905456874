"""`finetune()`: continue training given params with a wrapped optimizer and a wrapped
apply — the pruning-aware and quantization-aware steps are the ordinary `train_step` on a
`TrainState` whose `tx` keeps masks (`prune_optax`) and whose `apply_fn` runs the model
through fake quantization. One short loop, no flags inside the step.

Runs on the default device; the epoch with the lowest validation NLL (among epochs from
`first_eligible_epoch` on, e.g. once a gradual pruning schedule has reached its target)
is kept.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from hamnet_jax.data.batch import Batch
from hamnet_jax.training.loop import validation_loss
from hamnet_jax.training.state import OptimizerConfig, TrainState, make_optimizer
from hamnet_jax.training.steps import train_step


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    grad_clip_norm: float = 1.0
    warmup_fraction: float = 0.05
    eval_batch_size: int = 512
    loss: str = "gaussian_nll"
    classification_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"FinetuneConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"FinetuneConfig.learning_rate must be > 0, got {self.learning_rate!r}")


@dataclasses.dataclass
class FinetuneResult:
    params: Any
    opt_state: Any
    history: list[dict[str, float]]
    best_epoch: int
    steps_per_epoch: int


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(n // min(batch_size, n), 1)


def finetune(
    apply_fn: Callable,
    params: Any,
    train: Batch,
    val: Batch,
    cfg: FinetuneConfig,
    wrap_tx: Callable[[optax.GradientTransformation], optax.GradientTransformation] = lambda tx: tx,
    first_eligible_epoch: int = 1,
    step: Callable[[Any, Batch, jax.Array], tuple[Any, dict]] | None = None,
    state_cls: type[TrainState] = TrainState,
    state_fields: dict[str, Any] | None = None,
    eval_params: Callable[[Any], Any] = lambda p: p,
) -> FinetuneResult:
    """Train `params` further; `apply_fn` is the model's apply or a wrapper of it with the
    same signature, `wrap_tx` wraps the AdamW chain (e.g. in `prune_optax`).

    Other steps plug in the same way: `step(state, batch, key) -> (state, metrics)` on a
    `state_cls` built with `state_fields` (e.g. `distill_step` on a `DistillState` holding
    the teachers); `eval_params(params)` is what validation applies `apply_fn` to."""
    n = train.size
    bs = min(cfg.batch_size, n)
    per_epoch = steps_per_epoch(n, bs)
    total = per_epoch * cfg.epochs
    opt = OptimizerConfig(cfg.learning_rate, cfg.weight_decay, int(cfg.warmup_fraction * total), total,
                          cfg.grad_clip_norm)
    if step is None:
        step = functools.partial(train_step, loss=cfg.loss, class_weight=cfg.classification_weight)
    state = state_cls.create(apply_fn=apply_fn, params=jax.tree_util.tree_map(np.asarray, params),
                             tx=wrap_tx(make_optimizer(opt)), **(state_fields or {}))
    history: list[dict[str, float]] = []
    best = (np.inf, 0, jax.device_get(state.params), None)
    base_key = jax.random.key(cfg.seed)
    for epoch in range(cfg.epochs):
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        metrics = []
        for i in range(per_epoch):
            batch = train.take(order[i * bs:(i + 1) * bs])
            key = jax.random.fold_in(base_key, epoch * per_epoch + i)
            state, m = step(state, batch, key)
            metrics.append(m)
        record = {"epoch": epoch + 1,
                  **{f"train_{k}": float(np.mean(v)) for k, v in jax.device_get(
                      {k: [m[k] for m in metrics] for k in metrics[0]}).items()},
                  **validation_loss(apply_fn, eval_params(state.params), val, cfg.eval_batch_size)}
        history.append(record)
        eligible = epoch + 1 >= first_eligible_epoch
        if eligible and (record["val_loss"] < best[0] or best[1] == 0):
            best = (record["val_loss"], epoch + 1, jax.device_get(state.params), jax.device_get(state.opt_state))
    if best[3] is None:  # no eligible epoch: the last one
        best = (history[-1]["val_loss"], cfg.epochs, jax.device_get(state.params), jax.device_get(state.opt_state))
    return FinetuneResult(best[2], best[3], history, best[1], per_epoch)
