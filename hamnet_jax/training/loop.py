"""`fit()`: epochs of `train_step`, validation, early stopping, checkpoints and resume.

Determinism: the epoch's shuffle comes from `(seed, epoch)` and the dropout key of a step
from `(seed, step)`, so a run resumed from its latest checkpoint replays exactly the
batches and keys an uninterrupted run would have used.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from hamnet_jax.config import TrainingConfig
from hamnet_jax.data.batch import Batch, validate_batch
from hamnet_jax.errors import InputError
from hamnet_jax.data.batched import compile_ahead, map_batched
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.training.checkpoints import Checkpoints
from hamnet_jax.training.dynamic_batching import epoch_batches, largest_batch_within_budget, padding_fraction
from hamnet_jax.transforms.losses import classification_loss, gaussian_nll
from hamnet_jax.training.progress import Progress
from hamnet_jax.training.plan import DEFAULT_PLAN, Plan
from hamnet_jax.training.precision import PrecisionPolicy, resolve_policy
from hamnet_jax.training.prefetch import prefetch
from hamnet_jax.training.sharded_setup import ShardedSetup, host_params, setup_sharded_training
from hamnet_jax.training.sharding import batch_divisor, make_mesh
from hamnet_jax.training.state import OptimizerConfig, TrainState
from hamnet_jax.training.steps import eval_step
from hamnet_jax.training.weight_averaging import debiased, decay_for, weight_average_state
from hamnet_jax.data.visit_packing import chunked_packing_rows, packing_rows

log = logging.getLogger("hamnet_jax")


@dataclasses.dataclass
class FitResult:
    params: Any
    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    batch_size: int = 0
    opt_state: Any = None  # host copy at the best epoch (pruning masks live here)


def validation_loss(apply_fn: Callable, params: Any, batch: Batch, batch_size: int) -> dict[str, float]:
    """Deterministic predictions of `apply_fn` (a model's apply, or a wrapped one that runs
    a pruned/quantized model) on `batch`: the Gaussian NLL and MAE (standardized units) of a
    regression head, the log loss and accuracy of a classification head. `val_loss`, which
    selects the best epoch, is the NLL, or the log loss of an outcome-only model."""
    out = map_batched(lambda b: eval_step(apply_fn, params, b), batch, batch_size)
    record = {}
    if "logits" in out:
        labels = np.asarray(batch.labels)
        record.update(val_log_loss=float(np.mean(classification_loss(out, labels))),
                      val_accuracy=float(((np.asarray(out["logits"]) > 0) == (labels > 0.5)).mean()))
        record["val_loss"] = record["val_log_loss"]
    if "mean" in out:
        y = np.asarray(batch.targets)
        nll = np.asarray(gaussian_nll(out["mean"], out["log_var"], y))
        record.update(val_loss=float(nll.mean()), val_mae=float(np.abs(out["mean"] - y).mean()))
    return record


def execution_config(model_config: HAMNetConfig, cfg: TrainingConfig, policy: PrecisionPolicy) -> HAMNetConfig:
    """The model config training runs with: the policy's compute dtype, the remat policy
    and the attention kernel of `cfg` (same parameters as `model_config`)."""
    return model_config.replace(dtype=policy.compute_dtype, remat_policy=cfg.gradient_checkpointing,
                                attention=cfg.memory_efficient_attention)


def choose_batch_size(cfg: TrainingConfig, mesh: Mesh, n: int, state: TrainState | None,
                      setup: ShardedSetup | None, example: Batch) -> int:
    """`cfg.batch_size` (at most n), or with a memory budget the largest batch whose compiled
    step fits, in multiples of (devices splitting the batch) x (accumulation steps)."""
    unit = batch_divisor(mesh) * cfg.gradient_accumulation_steps
    cap = min(cfg.batch_size, n)
    if cfg.memory_budget_mb > 0:
        def compile_at(b: int):
            shapes = jax.tree_util.tree_map(
                lambda a: jax.ShapeDtypeStruct((b,) + a.shape[1:], a.dtype, sharding=setup.batch_sharding), example)
            return setup.step.lower(state, shapes, setup.base_key, np.int32(0)).compile()

        try:
            cap, measured = largest_batch_within_budget(compile_at, cfg.memory_budget_mb * 2**20, cap, unit)
        except MemoryError as e:
            raise InputError(f"training.memory_budget_mb={cfg.memory_budget_mb:g}: {e}") from None
        log.info("memory budget %.0f MiB: batch size %d (compiled step bytes by batch: %s)",
                 cfg.memory_budget_mb, cap, measured)
    if cap < unit:
        raise InputError(f"training.batch_size={cfg.batch_size} (with {n} training subjects) is smaller than "
                         f"{unit} = the {batch_divisor(mesh)} devices splitting the batch x "
                         f"{cfg.gradient_accumulation_steps} accumulation steps")
    return cap // unit * unit


def epoch_steps(cfg: TrainingConfig, n: int, mesh: Mesh | None = None) -> int:
    """Optimizer steps per epoch of `fit` without a memory budget: the batch size is
    `cfg.batch_size` (at most n) rounded down to the devices x accumulation unit."""
    mesh = mesh if mesh is not None else make_mesh(cfg.mesh)
    return max(n // choose_batch_size(dataclasses.replace(cfg, memory_budget_mb=0.0), mesh, n, None, None, None), 1)


def _fresh_meta() -> dict[str, Any]:
    return {"epoch": 0, "best_val_loss": math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}


def _restore(ckpt: Checkpoints | None, state: TrainState, resume: bool,
             average_decay: float = 0.0) -> tuple[TrainState, dict, tuple | None]:
    """(state, loop bookkeeping, best (kept params, opt_state)) from the latest checkpoint when
    resuming; the fresh ones otherwise."""
    if not (resume and ckpt and ckpt.latest_step() is not None):
        return state, _fresh_meta(), None
    state, meta = ckpt.restore("latest", state)  # onto this run's mesh, whatever mesh saved it
    best = None
    if ckpt.latest_step("best") is not None:
        restored = ckpt.restore("best", state)[0]
        best = (kept_params(restored, average_decay), host_params(restored.opt_state))
    return state, meta, best


def _epoch_plan(counts: np.ndarray, cfg: TrainingConfig, epoch: int, bs: int,
                max_visits: int) -> list[tuple[np.ndarray, int]]:
    """The epoch's batches (subject rows, visit slots): its shuffle comes from (seed, epoch)."""
    return epoch_batches(counts, bs, np.random.default_rng([cfg.seed, epoch]), max_visits, cfg.bucket_by_visits)


def _packing(cfg: TrainingConfig, mesh: Mesh, train: Batch, val: Batch, bs: int) -> tuple[int, int]:
    """Visit-packing rows of the train step and of validation (0: unpacked): the most real
    visits of any batch of any epoch, of any validation chunk. Off with `training.visit_packing:
    false`, with batches split over several devices (packing would gather rows across
    them), and with visit bucketing (its batches are already cut to the visits they need)."""
    if not cfg.visit_packing or batch_divisor(mesh) > 1 or cfg.bucket_by_visits:
        return 0, 0
    counts, max_visits = train.visit_counts(), int(np.shape(train.visit_mask)[1])
    train_rows = packing_rows((counts[rows].sum() for epoch in range(cfg.num_epochs)
                               for rows, _ in _epoch_plan(counts, cfg, epoch, bs, max_visits)), bs * max_visits)
    return train_rows, chunked_packing_rows(val.visit_counts(), cfg.eval_batch_size, int(np.shape(val.visit_mask)[1]))


def _train_epoch(sharded: ShardedSetup, state: TrainState, train: Batch, cfg: TrainingConfig, epoch: int,
                 bs: int, steps_per_epoch: int, packed_rows: int = 0,
                 progress: Progress | None = None) -> tuple[TrainState, dict[str, float]]:
    """One epoch of steps; the epoch's shuffle comes from (seed, epoch), each step's key from
    the step number. Each process reads only its devices' rows of a batch, `cfg.prefetch_batches`
    ahead of the step on a background thread. Metrics stay on device until the epoch ends
    (no host sync per step)."""
    counts = train.visit_counts()
    batches = _epoch_plan(counts, cfg, epoch, bs, int(np.shape(train.visit_mask)[1]))
    if packed_rows and max(counts[rows].sum() for rows, _ in batches) > packed_rows:  # never silently drop a visit
        raise RuntimeError(f"epoch {epoch + 1}: a batch has more real visits than the {packed_rows} packed rows")
    on_device = prefetch((sharded.read_batch(train, rows, visits) for rows, visits in batches), cfg.prefetch_batches)
    if progress is not None:
        on_device = progress.steps(on_device, len(batches), epoch)
    step_metrics = []
    for i, batch in enumerate(on_device):
        state, m = sharded.device_step(state, batch, epoch * steps_per_epoch + i)
        step_metrics.append(m)
    means = {k: float(np.mean([m[k] for m in jax.device_get(step_metrics)])) for k in step_metrics[0]}
    return state, {"epoch": epoch + 1, **{f"train_{k}": v for k, v in means.items()},
                   "padding_fraction": padding_fraction(counts, batches)}


def _bookkeeping(meta: dict[str, Any], record: dict[str, float], eligible: bool,
                 metric: str = "val_loss") -> tuple[dict[str, Any], bool]:
    """The loop's state after an epoch, and whether the epoch is the best so far by `metric`
    (`best_val_loss` holds the best value of that metric)."""
    improved = eligible and (record[metric] < meta["best_val_loss"] or meta["best_epoch"] == 0)
    return {
        "epoch": record["epoch"],
        "best_val_loss": record[metric] if improved else meta["best_val_loss"],
        "best_epoch": record["epoch"] if improved else meta["best_epoch"],
        "bad_epochs": 0 if improved else meta["bad_epochs"] + 1,
        "history": meta["history"] + [record],
    }, improved


def fit(
    model_config: HAMNetConfig,
    cfg: TrainingConfig,
    train: Batch,
    val: Batch,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: bool = False,
    mesh: Mesh | None = None,
    plan: Plan = DEFAULT_PLAN,
) -> FitResult:
    """Train HAMNet on `train`, select the epoch with the lowest `cfg.selection_metric`
    (validation MAE by default; an outcome-only model's validation log loss).

    Runs on `mesh` (default: built from `cfg.mesh` over all devices of all processes);
    every process passes the same host data and transfers only its own rows. `plan` says
    what is trained (fresh init or given params, objective, optimizer and apply wrappers):
    pruning, quantization-aware training, distillation and regularization run here too.
    With `resume`, a run continues from the latest checkpoint under `checkpoint_dir` (a
    fresh start if there is none yet).
    """
    validate_batch(train, model_config)
    validate_batch(val, model_config)
    if cfg.selection_metric == "val_mae" and not model_config.regression:
        raise InputError("training.selection_metric: val_mae needs a regression head; an outcome-only model "
                         "selects by val_loss (its log loss)")
    cfg = dataclasses.replace(cfg, selection_metric=cfg.selection_for(model_config.regression))
    run = _start(model_config, cfg, train, val, mesh if mesh is not None else make_mesh(cfg.mesh), plan)
    ckpt = Checkpoints(checkpoint_dir) if checkpoint_dir else None
    run.state, meta, best = _restore(ckpt, run.state, resume, run.average_decay)
    primary = jax.process_index() == 0
    shown = Progress(progress and primary, cfg.num_epochs, meta["epoch"])
    stopped = False
    for epoch in range(meta["epoch"], cfg.num_epochs):
        if meta["bad_epochs"] >= cfg.early_stop_patience > 0:
            stopped = True
            break
        record, meta, params, improved = _epoch(run, train, val, cfg, plan, epoch, meta, shown)
        if improved:
            best = (params, host_params(run.state.opt_state))
        if ckpt:
            if improved:
                ckpt.save("best", epoch + 1, run.state, meta)
            ckpt.save("latest", epoch + 1, run.state, meta)
        if on_epoch and primary:
            on_epoch(record)
        shown.epoch_done(record)
    shown.close()
    if ckpt:
        ckpt.close()
    if best is None:  # no eligible epoch: the last one
        best = (run.kept_params(), host_params(run.state.opt_state))
        meta["best_epoch"], meta["best_val_loss"] = len(meta["history"]), meta["history"][-1][cfg.selection_metric]
    return FitResult(best[0], meta["history"], meta["best_epoch"], meta["best_val_loss"], stopped, run.batch_size,
                     best[1])


@dataclasses.dataclass
class _Training:
    """What `fit`'s epochs run: the state, its compiled step, the batch size and packing,
    and the validation forward (compiling ahead on another thread)."""

    state: TrainState
    sharded: ShardedSetup
    batch_size: int
    steps_per_epoch: int
    train_rows: int
    apply_fn: Callable
    compiling_eval: Any
    average_decay: float = 0.0  # > 0: validation and the result read the weights' moving average

    def kept_params(self) -> Any:
        return kept_params(self.state, self.average_decay)


def kept_params(state: TrainState, average_decay: float) -> Any:
    """The weights validation scores and the result keeps, on the host: the moving average of
    the weights when training keeps one (`average_decay` > 0: training/weight_averaging.py),
    else the step's."""
    params = host_params(state.params)
    average = weight_average_state(state.opt_state) if average_decay else None
    return params if average is None else debiased(host_params(average), average_decay, params)


def _start(model_config: HAMNetConfig, cfg: TrainingConfig, train: Batch, val: Batch, mesh: Mesh,
           plan: Plan) -> _Training:
    """The batch size, the initial state and its step, the validation forward compiling."""
    policy = resolve_policy(cfg.precision_mode, param_dtype=cfg.param_dtype)
    config = execution_config(model_config, cfg, policy)
    n = train.size
    example = train.take(np.arange(min(n, 2)))

    def make_setup(model: HAMNet, total_steps: int, warmup_steps: int, step_batch: Batch | None = None,
                   average_decay: float = 0.0) -> tuple[TrainState, ShardedSetup]:
        opt = OptimizerConfig(cfg.learning_rate, cfg.weight_decay, warmup_steps, total_steps, cfg.grad_clip_norm,
                              average_decay=average_decay)
        return setup_sharded_training(model, example, opt, policy, mesh, cfg.seed, cfg.loss,
                                      cfg.classification_weight, cfg.gradient_accumulation_steps, plan=plan,
                                      dropout_rng=cfg.dropout_rng, step_batch=step_batch)

    # the schedule needs the step count, hence the batch size; a memory budget measures the
    # compiled step first, on a provisional (unpacked: the most memory) state of the same shapes
    probe = make_setup(HAMNet(config), 2, 1) if cfg.memory_budget_mb > 0 else (None, None)
    bs = choose_batch_size(cfg, mesh, n, *probe, example=train.take(np.arange(1)))
    steps_per_epoch = max(n // bs, 1)
    del probe
    schedule_epochs = cfg.schedule_epochs or cfg.num_epochs
    train_rows, val_rows = _packing(cfg, mesh, train, val, bs)
    # every batch has the first one's shapes, so the step compiles ahead from them (not with
    # visit bucketing, whose batches' visit slots vary: the first to run depends on the epoch)
    # (its shapes from one row: a process reads only its own rows of a training batch)
    rows, visits = _epoch_plan(train.visit_counts(), cfg, 0, bs, int(np.shape(train.visit_mask)[1]))[0]
    first = None if cfg.bucket_by_visits else jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct((len(rows),) + a.shape[1:], a.dtype), train.take(rows[:1]).trim_visits(visits))
    average_decay = (decay_for(cfg.weight_average_epochs, steps_per_epoch)
                     if cfg.weight_average_epochs > 0 and plan.weight_averaging else 0.0)
    if cfg.weight_average_epochs > 0 and not plan.weight_averaging:
        log.info("training.weight_average_epochs does not apply to this fit (its pruning mask grows while it "
                 "trains): the step's weights are validated and kept")
    state, sharded = make_setup(HAMNet(config, packed_visits=train_rows), steps_per_epoch * schedule_epochs,
                                int(cfg.warmup_epochs * steps_per_epoch), first, average_decay)
    apply_fn = plan.wrap_apply(HAMNet(config, packed_visits=val_rows).apply)
    # validation's forward compiles on the other core while the first epoch's step compiles
    compiling_eval = compile_ahead(lambda b: eval_step.lower(apply_fn, plan.eval_params(host_params(state.params)),
                                                             b), val, cfg.eval_batch_size, "validation")
    return _Training(state, sharded, bs, steps_per_epoch, train_rows, apply_fn, compiling_eval, average_decay)


def _epoch(run: _Training, train: Batch, val: Batch, cfg: TrainingConfig, plan: Plan, epoch: int,
           meta: dict[str, Any],
           progress: Progress | None = None) -> tuple[dict[str, float], dict[str, Any], Any, bool]:
    """One epoch of steps, then validation: (its record, the bookkeeping, the params on the
    host, whether they improved)."""
    run.state, record = _train_epoch(run.sharded, run.state, train, cfg, epoch, run.batch_size, run.steps_per_epoch,
                                     run.train_rows, progress)
    params = run.kept_params()
    run.compiling_eval.wait()
    record.update(validation_loss(run.apply_fn, plan.eval_params(params), val, cfg.eval_batch_size))
    meta, improved = _bookkeeping(meta, record, epoch + 1 >= plan.first_eligible_epoch, cfg.selection_metric)
    return record, meta, params, improved
