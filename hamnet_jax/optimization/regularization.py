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

or, the whole loop: `params, result = reg.fit(config, train, val, TrainingConfig(num_epochs=10))`,
which runs `fit` on the regularized objective with the optimizer from `reg.wrap_optimizer`.

`placement()` says where each enabled technique acts: loss terms come from
`apply_regularization`; label smoothing and DropConnect act inside the regularized
objective's task loss and forward pass; weight decay and spectral normalization live in the
optimizer (`wrap_optimizer`, `weight_decay`); dropout kinds, stochastic depth and VIB in the
model (`prepare_model`); augmentations in the data (`prepare_data`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import optax

from hamnet_jax.data.batch import Batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.config import TrainingConfig
from hamnet_jax.training.fit_options import FitOptions
from hamnet_jax.training.loop import FitResult
from hamnet_jax.training.plan import Plan
from hamnet_jax.training.regularized_step import (regularized_apply, regularized_model_config, regularized_optimizer,
                                                 regularized_plan, regularized_weight_decay)
from hamnet_jax.transforms.regularization import (R, RegularizationConfig, RegularizationType,
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
        """`config` with the dropout rate and VIB bottleneck the techniques ask for."""
        return regularized_model_config(config, self.config)

    def prepare_model(self, model: HAMNet | HAMNetConfig) -> RegularizedModel:
        module = HAMNet(self.model_config(model.config if isinstance(model, HAMNet) else model))
        return RegularizedModel(module, regularized_apply(self.config, module.config)(module.apply))

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

    def wrap_optimizer(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
        return regularized_optimizer(self.config)(tx)

    @property
    def weight_decay(self) -> float:
        """Decoupled (AdamW) weight decay: the configured value when enabled, else 0."""
        return regularized_weight_decay(self.config)

    def placement(self) -> dict[str, str]:
        """Where each enabled technique acts (the ones `apply_regularization` does not sum)."""
        where = {R.WEIGHT_DECAY: "optimizer (weight_decay, decoupled AdamW)",
                 R.SPECTRAL_NORM: "optimizer (wrap_optimizer)",
                 R.LABEL_SMOOTHING: "task loss (smooth_labels in the regularized objective)",
                 R.DROPCONNECT: "forward pass (drop_connect on the params in the regularized objective)",
                 R.DROPOUT: "model (prepare_model)", R.GAUSSIAN_DROPOUT: "model (prepare_model)",
                 R.ALPHA_DROPOUT: "model (prepare_model)", R.STOCHASTIC_DEPTH: "model (prepare_model)",
                 R.INFORMATION_BOTTLENECK: "model (prepare_model) + loss (apply_regularization)",
                 R.MIXUP: "data (prepare_data)", R.CUTMIX: "data (prepare_data)",
                 R.MODALITY_DROPOUT: "data (prepare_data)", R.RANDAUGMENT: "data (prepare_data)"}
        return {t.value: where.get(t, "loss (apply_regularization)") for t in self.config.enabled_techniques}

    def plan(self, model_config: HAMNetConfig, params: Any = None, loss: str = "gaussian_nll",
             class_weight: float = 1.0) -> Plan:
        """The `fit` plan of regularized training (see `training.regularized_step.regularized_plan`)."""
        return regularized_plan(self.config, model_config, params, loss, class_weight)

    def fit(self, model: HAMNet | HAMNetConfig, train: Batch, val: Batch, cfg: TrainingConfig,
            params: Any = None, options: FitOptions | None = None) -> tuple[Any, FitResult]:
        """Train (from `params`, else a fresh init with `cfg.seed`) with every enabled technique
        through `fit`; returns the prepared model's config-compatible params and the loop's result."""
        config = self.model_config(model.config if isinstance(model, HAMNet) else model)
        cfg = dataclasses.replace(cfg, weight_decay=self.weight_decay)
        options = options or FitOptions()
        plan = self.plan(config, params, cfg.loss, cfg.classification_weight)
        result = options.fit(config, cfg, train, val, plan)
        return result.params, result
