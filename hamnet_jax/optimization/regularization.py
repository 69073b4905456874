"""`HAMNetRegularizer`: the original framework's regularization facade.

    from hamnet_jax.optimization.regularization import (
        HAMNetRegularizer, RegularizationConfig, RegularizationType)

    reg = HAMNetRegularizer(RegularizationConfig(
        dropout_rate=0.1, weight_decay=1e-4, label_smoothing=0.1, mixup_alpha=0.2,
        enabled_techniques=[RegularizationType.DROPOUT, RegularizationType.WEIGHT_DECAY,
                            RegularizationType.LABEL_SMOOTHING, RegularizationType.MIXUP]))
    model = reg.prepare_model(HAMNet(config))        # .apply / .init like the module
    batch = reg.prepare_data(batch, key)              # augmentation (targets travel in the batch)
    outputs, aux = model.apply({"params": p}, batch, deterministic=False, rngs={"dropout": k})
    loss = task_loss + reg.apply_regularization(model, p, batch, outputs, aux, key)

or, the whole loop: `params, result = reg.fit(config, train, val, FinetuneConfig(...))`,
which runs `training.regularized_step` with the optimizer from `reg.wrap_optimizer`.
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
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, init_params
from hamnet_jax.training.finetune import FinetuneConfig, FinetuneResult, finetune
from hamnet_jax.training.regularized_step import regularized_step
from hamnet_jax.transforms.dropout_variants import training_behaviour
from hamnet_jax.transforms.penalties import spectral_norm_optax
from hamnet_jax.transforms.regularization import (SPECTRAL_RULES, R, RegularizationConfig, RegularizationType,
                                                  prepare_batch, regularization_terms)

__all__ = ["HAMNetRegularizer", "RegularizationConfig", "RegularizationType", "RegularizedModel"]


@dataclasses.dataclass(frozen=True)
class RegularizedModel:
    """A HAMNet whose apply runs the configured dropout kind and stochastic depth in
    training; `module` is the plain module (same parameters) for export and serving."""

    module: HAMNet
    apply: Callable

    @property
    def config(self) -> HAMNetConfig:
        return self.module.config

    def init(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.init(*args, **kwargs)


class HAMNetRegularizer:
    def __init__(self, config: RegularizationConfig | None = None) -> None:
        self.config = config or RegularizationConfig()

    def model_config(self, config: HAMNetConfig) -> HAMNetConfig:
        """`config` with the dropout rate (0 when no dropout technique is enabled) and the
        VIB bottleneck set as the techniques ask."""
        c = self.config
        return config.replace(dropout=c.dropout_rate if c.dropout_kind else 0.0,
                              information_bottleneck=c.on(R.INFORMATION_BOTTLENECK) or config.information_bottleneck)

    def prepare_model(self, model: HAMNet | HAMNetConfig) -> RegularizedModel:
        c = self.config
        module = HAMNet(self.model_config(model.config if isinstance(model, HAMNet) else model))
        depth = c.stochastic_depth_rate if c.on(R.STOCHASTIC_DEPTH) else 0.0
        return RegularizedModel(module, training_behaviour(module.apply, module.config, c.dropout_kind or "standard",
                                                           depth))

    def prepare_data(self, batch: Batch, key: jax.Array) -> Batch:
        return prepare_batch(batch, key, self.config)

    def apply_regularization(self, model: RegularizedModel | HAMNet, params: Any, batch: Batch, outputs: dict,
                             aux: dict, key: jax.Array) -> jax.Array:
        """Sum of the enabled loss terms for one forward pass (`outputs`, `aux` of `batch`)."""
        k_forward, k_terms = jax.random.split(key)

        def forward(b: Batch, k: jax.Array) -> tuple[dict, dict]:
            return model.apply({"params": params}, b, deterministic=False, rngs={"dropout": k})

        terms = regularization_terms(self.config, params, batch, outputs, aux, forward, k_terms)
        return sum(terms.values(), jax.numpy.float32(0))

    @property
    def weight_decay(self) -> float:
        """Decoupled (AdamW) weight decay: the configured value when enabled, else 0."""
        return self.config.weight_decay if self.config.on(R.WEIGHT_DECAY) else 0.0

    def wrap_optimizer(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
        c = self.config
        if not c.on(R.SPECTRAL_NORM):
            return tx
        return optax.chain(tx, spectral_norm_optax(SPECTRAL_RULES, c.spectral_max_norm, c.spectral_iterations))

    def fit(self, model: HAMNet | HAMNetConfig, train: Batch, val: Batch, cfg: FinetuneConfig,
            params: Any = None) -> tuple[Any, FinetuneResult]:
        """Train (from `params`, else a fresh init with `cfg.seed`) with every enabled technique;
        returns the prepared model's config-compatible params and the loop's result."""
        prepared = self.prepare_model(model)
        if params is None:
            params = init_params(prepared.module, train.take(np.arange(min(2, train.size))),
                                 jax.random.key(cfg.seed))
        cfg = dataclasses.replace(cfg, weight_decay=self.weight_decay)
        step = functools.partial(regularized_step, config=self.config, loss=cfg.loss,
                                 class_weight=cfg.classification_weight)
        result = finetune(prepared.apply, params, train, val, cfg, wrap_tx=self.wrap_optimizer, step=step)
        return result.params, result
