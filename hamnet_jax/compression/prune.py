"""Prune a trained HAMNet and fine-tune it: unstructured criteria through `prune_optax`
(gradual schedule or iterative one-shot cycles), SNIP from calibration gradients, and
structured pruning followed by compaction into a smaller dense model."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from hamnet_jax.config import PruningConfig, PruningMethod, TrainingConfig
from hamnet_jax.data.batch import Batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.training.fit_options import FitOptions
from hamnet_jax.training.plan import Plan
from hamnet_jax.transforms.losses import regression_loss
from hamnet_jax.transforms import structured
from hamnet_jax.transforms.masks import apply_masks, sparsity_report
from hamnet_jax.transforms.pruning import (
    ACCUMULATING, Criterion, PruningSchedule, prune_optax, pruning_masks, saliency_masks,
)

CRITERIA = {
    PruningMethod.MAGNITUDE: (Criterion.MAGNITUDE, "layer"),
    PruningMethod.GLOBAL_MAGNITUDE: (Criterion.MAGNITUDE, "global"),
    PruningMethod.GRADIENT: (Criterion.SALIENCY, "layer"),
    PruningMethod.TAYLOR: (Criterion.TAYLOR, "layer"),
    PruningMethod.MOVEMENT: (Criterion.MOVEMENT, "layer"),
}


@dataclasses.dataclass
class PruneOutcome:
    config: HAMNetConfig
    params: Any
    masks: Any | None
    history: list[dict[str, float]]
    report: dict[str, Any]


def _stage_cfg(pcfg: PruningConfig, options: FitOptions, epochs: int) -> TrainingConfig:
    return options.config(epochs, pcfg.batch_size, pcfg.learning_rate, pcfg.seed)


def loss_gradients(config: HAMNetConfig, params: Any, batch: Batch) -> Any:
    """Gradient of the mean task loss (deterministic forward) on one batch."""
    model = HAMNet(config)

    def loss(p: Any) -> jax.Array:
        out, _ = model.apply({"params": p}, batch, deterministic=True)
        return regression_loss(out, batch.targets, "gaussian_nll").mean()

    return jax.jit(jax.grad(loss))(params)


def _gradual(config: HAMNetConfig, params: Any, train: Batch, val: Batch, pcfg: PruningConfig,
             options: FitOptions) -> PruneOutcome:
    criterion, scope = CRITERIA[pcfg.method]
    cfg = _stage_cfg(pcfg, options, pcfg.finetune_epochs)
    per_epoch = options.steps_per_epoch(cfg, train.size)
    end_epoch = pcfg.schedule_end_epoch
    schedule = PruningSchedule(pcfg.pruning_schedule, pcfg.target_sparsity, pcfg.start_epoch * per_epoch,
                               end_epoch * per_epoch, pcfg.pruning_frequency)
    plan = Plan(init_params=params, wrap_tx=lambda tx: prune_optax(tx, schedule, criterion, scope=scope),
                first_eligible_epoch=end_epoch + 1, weight_averaging=False)  # the mask grows during the fit
    result = options.fit(config, cfg, train, val, plan)
    return PruneOutcome(config, result.params, pruning_masks(result.opt_state), result.history, {})


def _cycles(config: HAMNetConfig, params: Any, train: Batch, val: Batch, pcfg: PruningConfig,
            options: FitOptions) -> PruneOutcome:
    """Iterative prune -> fine-tune: cycle i prunes one-shot to target * i / cycles."""
    criterion, scope = CRITERIA.get(pcfg.method, (Criterion.SALIENCY, "global"))
    history: list[dict[str, float]] = []
    masks = None
    epochs = max(pcfg.finetune_epochs // pcfg.cycles, 1)
    cfg = _stage_cfg(pcfg, options, epochs)
    for i in range(1, pcfg.cycles + 1):
        target = pcfg.target_sparsity * i / pcfg.cycles
        if pcfg.method == PruningMethod.SNIP:  # one gradient, global |w * g|, masks fixed while fine-tuning
            masks = saliency_masks(params, loss_gradients(config, params, train.take(np.arange(min(train.size, 512)))),
                                   target)
            wrap = lambda tx, m=masks: prune_optax(tx, None, initial_masks=m)  # noqa: E731
        else:  # accumulating criteria gather one epoch of evidence before the cut
            per_epoch = options.steps_per_epoch(cfg, train.size)
            at = (per_epoch if epochs > 1 else per_epoch // 2) if criterion in ACCUMULATING else 0
            wrap = lambda tx, t=target, m=masks, at=at: prune_optax(  # noqa: E731
                tx, PruningSchedule("one_shot", t, at), criterion, scope=scope, initial_masks=m)
        plan = Plan(init_params=params, wrap_tx=wrap,
                    first_eligible_epoch=2 if criterion in ACCUMULATING and epochs > 1 else 1,
                    weight_averaging=pcfg.method == PruningMethod.SNIP)  # else the cut falls during the fit
        result = options.stage(f"cycle{i}").fit(config, cfg, train, val, plan)
        params, masks = result.params, pruning_masks(result.opt_state)
        history += [{**h, "cycle": i, "target_sparsity": target} for h in result.history]
    return PruneOutcome(config, params, masks, history, {})


def _structured(config: HAMNetConfig, params: Any, train: Batch, val: Batch, pcfg: PruningConfig,
                options: FitOptions) -> PruneOutcome:
    groups = structured.unit_groups(params, pcfg.structures)
    history: list[dict[str, float]] = []
    keep: dict[str, np.ndarray] = {}
    cfg = _stage_cfg(pcfg, options, max(pcfg.finetune_epochs // pcfg.cycles, 1))
    for i in range(1, pcfg.cycles + 1):
        target = pcfg.target_sparsity * i / pcfg.cycles
        scores = structured.unit_scores(groups, params)
        if keep:  # units removed in an earlier cycle stay removed
            scores = {k: np.where(keep[k], v, -np.inf) for k, v in scores.items()}
        keep = structured.select_units(groups, scores, target)
        masks = structured.structured_masks(groups, keep, params)
        params = apply_masks(params, masks)
        plan = Plan(init_params=params, wrap_tx=lambda tx, m=masks: prune_optax(tx, None, initial_masks=m))
        result = options.stage(f"cycle{i}").fit(config, cfg, train, val, plan)
        params = result.params
        history += [{**h, "cycle": i, "target_sparsity": target} for h in result.history]
    report = {"units_kept": {k: int(v.sum()) for k, v in keep.items()},
              "units_total": {g.layer: g.num_units for g in groups}}
    if not pcfg.compact:
        return PruneOutcome(config, params, masks, history, report)
    new_config, new_params = structured.compact(config, params, groups, keep)
    return PruneOutcome(new_config, new_params, None, history, report)


def prune_and_finetune(config: HAMNetConfig, params: Any, train: Batch, val: Batch,
                       pcfg: PruningConfig, options: FitOptions | None = None) -> PruneOutcome:
    """Pruned (and for structured pruning, compacted) config and params, fine-tuned by
    `fit` under `options` (precision, mesh, accumulation, checkpoints, resume)."""
    options = options or FitOptions()
    if pcfg.method == PruningMethod.STRUCTURED:
        out = _structured(config, params, train, val, pcfg, options)
    elif pcfg.method == PruningMethod.SNIP or pcfg.cycles > 1:
        out = _cycles(config, params, train, val, pcfg, options)
    else:
        out = _gradual(config, params, train, val, pcfg, options)
    out.report["sparsity"] = sparsity_report(out.params)
    return out
