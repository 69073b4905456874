"""Regularization: the technique names, their configuration, and the two pure functions a
training step composes them with.

* `prepare_batch(batch, key, config)`: the enabled data transforms, in the order
  modality dropout -> RandAugment -> CutMix -> mixup (transforms/augment.py).
* `regularization_terms(config, params, batch, outputs, aux, forward, key)`: the enabled
  loss terms, each already weighted, by name: weight penalties (transforms/penalties.py) on
  the weights weight decay decays (`select.weight_decay_mask`),
  adversarial and virtual adversarial losses (transforms/adversarial.py), manifold, VIB
  and consistency terms (transforms/embedding_regularizers.py).

What changes the model (dropout kind and rate, stochastic depth, the VIB bottleneck),
the parameters of a step (DropConnect) or the optimizer (decoupled weight decay, spectral
normalization) is applied by `optimization.regularization.HAMNetRegularizer` and
`training.regularized_step`; the individual transforms are re-exported here.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

import jax

from hamnet_jax.data.batch import Batch
from hamnet_jax.transforms.losses import task_loss
from hamnet_jax.transforms.adversarial import fgsm, pgd, vat_loss
from hamnet_jax.transforms.augment import (cutmix, drop_modalities, mixup, modality_dropout, rand_augment,
                                           smooth_labels)
from hamnet_jax.transforms.dropout_variants import drop_connect, dropout, training_behaviour
from hamnet_jax.transforms.embedding_regularizers import (consistency, information_bottleneck_kl, input_affinity,
                                                          manifold_smoothness)
from hamnet_jax.transforms.penalties import (elastic_net_penalty, l1_penalty, l2_penalty, power_iteration,
                                             spectral_norm_optax)
from hamnet_jax.transforms.select import weight_decay_mask

__all__ = [
    "RegularizationConfig", "RegularizationType", "consistency", "cutmix", "drop_connect", "drop_modalities",
    "dropout", "elastic_net_penalty", "fgsm", "information_bottleneck_kl", "input_affinity", "l1_penalty",
    "l2_penalty", "manifold_smoothness", "mixup", "modality_dropout", "pgd", "power_iteration", "prepare_batch",
    "rand_augment", "regularization_terms", "smooth_labels", "spectral_norm_optax", "training_behaviour", "vat_loss",
    "weight_decay_mask",
]


class RegularizationType(enum.StrEnum):
    DROPOUT = "dropout"
    GAUSSIAN_DROPOUT = "gaussian_dropout"
    ALPHA_DROPOUT = "alpha_dropout"
    DROPCONNECT = "dropconnect"
    STOCHASTIC_DEPTH = "stochastic_depth"
    WEIGHT_DECAY = "weight_decay"  # decoupled (AdamW)
    L1 = "l1"
    L2 = "l2"
    ELASTIC_NET = "elastic_net"
    SPECTRAL_NORM = "spectral_norm"
    LABEL_SMOOTHING = "label_smoothing"
    MIXUP = "mixup"
    CUTMIX = "cutmix"
    MODALITY_DROPOUT = "modality_dropout"
    RANDAUGMENT = "randaugment"
    ADVERSARIAL = "adversarial"  # FGSM
    PGD = "pgd"
    VAT = "vat"
    MANIFOLD = "manifold"
    INFORMATION_BOTTLENECK = "information_bottleneck"
    CONSISTENCY = "consistency"


R = RegularizationType
DROPOUT_KIND = {R.DROPOUT: "standard", R.GAUSSIAN_DROPOUT: "gaussian", R.ALPHA_DROPOUT: "alpha"}
# spectral normalization by default on the feed-forward kernels of fusion, temporal and head
SPECTRAL_RULES: tuple = ((r"^(fusion|temporal)/block_\d+/mlp/fc[12]/kernel$|^head_mlp/fc[12]/kernel$", True),
                         (r".*", False))


@dataclasses.dataclass(frozen=True)
class RegularizationConfig:
    """Every knob with a default; only `enabled_techniques` are applied. Hashable, so it is
    a static argument of the jitted step."""

    enabled_techniques: tuple[RegularizationType, ...] = (R.DROPOUT, R.WEIGHT_DECAY)
    dropout_rate: float = 0.1
    drop_connect_rate: float = 0.1
    stochastic_depth_rate: float = 0.1
    weight_decay: float = 1e-4
    l1_weight: float = 1e-5
    l2_weight: float = 1e-4
    elastic_l1_ratio: float = 0.5
    spectral_max_norm: float = 1.0
    spectral_iterations: int = 1
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.2
    cutmix_alpha: float = 1.0
    modality_dropout_rate: float = 0.25
    randaugment_ops: int = 2
    randaugment_magnitude: float = 5.0
    adversarial_epsilon: float = 0.1
    adversarial_weight: float = 0.5
    pgd_steps: int = 3
    vat_epsilon: float = 1.0
    vat_weight: float = 1.0
    manifold_weight: float = 0.1
    vib_beta: float = 1e-3
    consistency_weight: float = 1.0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "enabled_techniques", tuple(R(t) for t in self.enabled_techniques))
        except ValueError as err:
            raise ValueError(f"RegularizationConfig.enabled_techniques: {err}; expected names from "
                             f"{[t.value for t in R]}") from None
        kinds = [t for t in self.enabled_techniques if t in DROPOUT_KIND]
        if len(kinds) > 1:
            raise ValueError(f"RegularizationConfig.enabled_techniques: choose one dropout kind, got {kinds}")
        for name in ("dropout_rate", "drop_connect_rate", "stochastic_depth_rate", "modality_dropout_rate"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"RegularizationConfig.{name} must be in [0, 1), got {value!r}")
        for name in ("label_smoothing", "elastic_l1_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"RegularizationConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("mixup_alpha", "cutmix_alpha", "spectral_max_norm"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RegularizationConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "l1_weight", "l2_weight", "adversarial_epsilon", "adversarial_weight",
                     "vat_epsilon", "vat_weight", "manifold_weight", "vib_beta", "consistency_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"RegularizationConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("randaugment_ops", "pgd_steps", "spectral_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"RegularizationConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0.0 <= self.randaugment_magnitude <= 10.0:
            raise ValueError(f"RegularizationConfig.randaugment_magnitude must be in [0, 10], "
                             f"got {self.randaugment_magnitude!r}")

    def on(self, technique: RegularizationType) -> bool:
        return technique in self.enabled_techniques

    @property
    def dropout_kind(self) -> str | None:
        """The enabled dropout kind, or None when no dropout technique is enabled."""
        return next((DROPOUT_KIND[t] for t in self.enabled_techniques if t in DROPOUT_KIND), None)


def prepare_batch(batch: Batch, key: jax.Array, config: RegularizationConfig) -> Batch:
    keys = jax.random.split(key, 4)
    if config.on(R.MODALITY_DROPOUT):
        batch = modality_dropout(batch, keys[0], config.modality_dropout_rate)
    if config.on(R.RANDAUGMENT):
        batch = rand_augment(batch, keys[1], config.randaugment_ops, config.randaugment_magnitude)
    if config.on(R.CUTMIX):
        batch = cutmix(batch, keys[2], config.cutmix_alpha)
    if config.on(R.MIXUP):
        batch = mixup(batch, keys[3], config.mixup_alpha)
    return batch


Forward = Callable[[Batch, jax.Array], tuple[dict, dict]]


def regularization_terms(config: RegularizationConfig, params: Any, batch: Batch, outputs: dict, aux: dict,
                         forward: Forward, key: jax.Array, loss: str = "gaussian_nll",
                         class_weight: float = 1.0) -> dict[str, jax.Array]:
    """Weighted loss terms of the enabled techniques. `forward(batch, key)` reruns the model
    (same params and dropout behaviour as `outputs`), for the adversarial, VAT and
    consistency terms; `key` seeds their randomness."""
    terms: dict[str, jax.Array] = {}
    k_adv, k_vat, k_cons, k_aug = jax.random.split(key, 4)
    if config.on(R.L1):
        terms["l1"] = config.l1_weight * l1_penalty(params, weight_decay_mask(params))
    if config.on(R.L2):
        terms["l2"] = config.l2_weight * l2_penalty(params, weight_decay_mask(params))
    if config.on(R.ELASTIC_NET):
        terms["elastic_net"] = config.l2_weight * elastic_net_penalty(params, weight_decay_mask(params),
                                                                      config.elastic_l1_ratio)

    def loss_of_batch(b: Batch) -> jax.Array:
        return task_loss(forward(b, k_adv)[0], b.targets, b.labels, loss, class_weight).mean()

    if config.on(R.ADVERSARIAL):
        attacked = jax.lax.stop_gradient(fgsm(loss_of_batch, batch, config.adversarial_epsilon))
        terms["adversarial"] = config.adversarial_weight * loss_of_batch(attacked)
    if config.on(R.PGD):
        attacked = jax.lax.stop_gradient(pgd(loss_of_batch, batch, config.adversarial_epsilon, k_adv,
                                             config.pgd_steps))
        terms["pgd"] = config.adversarial_weight * loss_of_batch(attacked)
    if config.on(R.VAT):
        terms["vat"] = config.vat_weight * vat_loss(lambda b: forward(b, k_vat)[0], batch, outputs, k_vat,
                                                    config.vat_epsilon)
    if config.on(R.MANIFOLD):
        terms["manifold"] = config.manifold_weight * manifold_smoothness(aux["fused"], input_affinity(batch))
    if config.on(R.INFORMATION_BOTTLENECK):
        terms["information_bottleneck"] = config.vib_beta * information_bottleneck_kl(aux)
    if config.on(R.CONSISTENCY):
        second = rand_augment(batch, k_aug, config.randaugment_ops, config.randaugment_magnitude)
        terms["consistency"] = config.consistency_weight * consistency(outputs, forward(second, k_cons)[0])
    return terms
