"""`fit()`: epochs of `train_step`, validation, early stopping, checkpoints and resume.

Determinism: the epoch's shuffle comes from `(seed, epoch)` and the dropout key of a step
from `(seed, step)`, so a run resumed from its latest checkpoint replays exactly the
batches and keys an uninterrupted run would have used.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hamnet_jax.config import TrainingConfig
from hamnet_jax.data.batch import Batch, validate_batch
from hamnet_jax.inference.batched import map_batched
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.training.checkpoints import Checkpoints
from hamnet_jax.training.losses import gaussian_nll
from hamnet_jax.training.state import OptimizerConfig, TrainState, create_train_state
from hamnet_jax.training.steps import eval_step, train_step


@dataclasses.dataclass
class FitResult:
    params: Any
    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    stopped_early: bool


def validation_loss(model: HAMNet, params: Any, batch: Batch, batch_size: int) -> dict[str, float]:
    """Mean Gaussian NLL and MAE (standardized units) of deterministic predictions."""
    out = map_batched(lambda b: eval_step(model.apply, params, b), batch, batch_size)
    y = np.asarray(batch.targets)
    nll = np.asarray(gaussian_nll(out["mean"], out["log_var"], y))
    return {"val_loss": float(nll.mean()), "val_mae": float(np.abs(out["mean"] - y).mean())}


def fit(
    model_config: HAMNetConfig,
    cfg: TrainingConfig,
    train: Batch,
    val: Batch,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: bool = False,
) -> FitResult:
    """Train HAMNet on `train`, select the epoch with the lowest validation NLL."""
    validate_batch(train, model_config)
    validate_batch(val, model_config)
    model = HAMNet(model_config)
    n = train.size
    bs = min(cfg.batch_size, n)
    steps_per_epoch = max(n // bs, 1)
    total = steps_per_epoch * cfg.num_epochs
    opt = OptimizerConfig(cfg.learning_rate, cfg.weight_decay, int(cfg.warmup_epochs * steps_per_epoch), total,
                          cfg.grad_clip_norm)
    key = jax.random.key(cfg.seed)
    state: TrainState = create_train_state(model, train.take(np.arange(bs)), jax.random.fold_in(key, 0), opt)
    ckpt = Checkpoints(checkpoint_dir) if checkpoint_dir else None
    meta: dict[str, Any] = {"epoch": 0, "best_val_loss": math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}
    best_params = None
    if resume and ckpt and ckpt.latest_step() is not None:
        state, meta = ckpt.restore("latest", state)
        if ckpt.latest_step("best") is not None:
            best_params = ckpt.restore("best", state)[0].params
    dropout_key = jax.random.fold_in(key, 1)

    epochs = range(meta["epoch"], cfg.num_epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, initial=meta["epoch"], total=cfg.num_epochs, desc="train", unit="epoch")
    stopped = False
    for epoch in epochs:
        if meta["bad_epochs"] >= cfg.early_stop_patience > 0:
            stopped = True
            break
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        step_metrics = []  # stays on device until the epoch ends: no host sync per step
        for i in range(steps_per_epoch):
            batch = train.take(order[i * bs:(i + 1) * bs])
            step_key = jax.random.fold_in(dropout_key, epoch * steps_per_epoch + i)
            state, m = train_step(state, batch, step_key, cfg.loss, cfg.classification_weight)
            step_metrics.append(m)
        means = {k: float(np.mean([m[k] for m in jax.device_get(step_metrics)])) for k in step_metrics[0]}
        record = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in means.items()}}
        record.update(validation_loss(model, state.params, val, cfg.eval_batch_size))
        improved = record["val_loss"] < meta["best_val_loss"]
        meta = {
            "epoch": epoch + 1,
            "best_val_loss": record["val_loss"] if improved else meta["best_val_loss"],
            "best_epoch": epoch + 1 if improved else meta["best_epoch"],
            "bad_epochs": 0 if improved else meta["bad_epochs"] + 1,
            "history": meta["history"] + [record],
        }
        if improved:  # host copy: the device buffers are donated to the next step
            best_params = jax.device_get(state.params)
        if ckpt:
            if improved:
                ckpt.save("best", epoch + 1, state, meta)
            ckpt.save("latest", epoch + 1, state, meta)
        if on_epoch:
            on_epoch(record)
        if progress:
            epochs.set_postfix(val_loss=f"{record['val_loss']:.3f}", val_mae=f"{record['val_mae']:.3f}")

    if ckpt:
        ckpt.close()
    params = best_params if best_params is not None else jax.device_get(state.params)
    return FitResult(params, meta["history"], meta["best_epoch"], meta["best_val_loss"], stopped)
