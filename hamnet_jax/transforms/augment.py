"""Data transforms for multimodal tabular batches: Batch -> Batch, pure and jit-able.

Masks travel with values everywhere: a feature that is missing (mask 0) stays exactly 0
with mask 0 unless a transform takes an observed value from another subject, and then the
mask comes along. All randomness is per subject.

* `mixup` (Zhang et al. 2018): subject i mixed with a random partner j, lambda ~
  Beta(a, a) per subject. A feature observed in both is mixed; observed in one only, that
  value is kept (mixing with a zero-filled gap would invent a value); observed in neither,
  it stays missing. Targets and labels mix with lambda; category codes come from the
  subject with the larger share.
* `cutmix` (Yun et al. 2019) over feature blocks: for one random modality per subject, a
  contiguous block of features (length (1 - lambda) x width) is replaced, values and
  masks, by the partner's; the target mixes by the replaced fraction of all features.
* `modality_dropout`: each measured modality of a subject is dropped (all visits) with
  probability `rate` (inputs, feature mask and modality mask zeroed, category codes too
  for lifestyle); if that would leave the subject with nothing, nothing is dropped. The
  model learns to predict from whatever subset is present, which is what missing imaging
  in a real cohort asks of it.
* `rand_augment`: RandAugment (Cubuk et al. 2020) keeps its two knobs, the number of ops N
  and one magnitude M in [0, 10], but its ops are image ops (rotate, shear, colour) with no
  meaning for a vector of biomarkers. The ops here are the tabular ones: Gaussian noise
  (sd 0.03 M in standardized units), per-feature scaling (1 + U(-0.03 M, 0.03 M)) and
  feature masking (each observed feature hidden with probability 0.03 M, mask and value).
  Each subject draws N ops uniformly.
* `smooth_labels`: label smoothing for the binary classification head (Szegedy et al. 2016).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hamnet_jax.data.batch import Batch
from hamnet_jax.models.config import MODALITIES

RAND_AUGMENT_OPS: tuple[str, ...] = ("noise", "scale", "mask")


def _per_subject(x: jax.Array, ndim: int) -> jax.Array:
    return x.reshape(x.shape + (1,) * (ndim - x.ndim))


def _partner(key: jax.Array, batch: Batch) -> jax.Array:
    return jax.random.permutation(key, batch.size)


def mixup(batch: Batch, key: jax.Array, alpha: float = 0.2) -> Batch:
    k_perm, k_lam = jax.random.split(key)
    j = _partner(k_perm, batch)
    lam = jax.random.beta(k_lam, alpha, alpha, (batch.size,))
    other = jax.tree_util.tree_map(lambda a: a[j], batch)

    def mix(xi, mi, xj, mj):
        li = _per_subject(lam, xi.ndim)
        wi, wj = li * mi, (1.0 - li) * mj
        total = wi + wj
        value = jnp.where(total > 0, (wi * xi + wj * xj) / jnp.where(total > 0, total, 1.0), 0.0)
        return value.astype(xi.dtype), (total > 0).astype(mi.dtype)

    mixed = {m: mix(batch.inputs[m], batch.feature_masks[m], other.inputs[m], other.feature_masks[m])
             for m in batch.inputs}
    times, visit_mask = mix(batch.visit_times, batch.visit_mask, other.visit_times, other.visit_mask)
    own = lam >= 0.5
    return batch.replace(
        inputs={m: v[0] for m, v in mixed.items()},
        feature_masks={m: v[1] for m, v in mixed.items()},
        categorical=jnp.where(_per_subject(own, 3), batch.categorical, other.categorical),
        modality_mask=jnp.maximum(batch.modality_mask, other.modality_mask),
        visit_mask=visit_mask, visit_times=times,
        targets=lam * batch.targets + (1.0 - lam) * other.targets,
        labels=lam * batch.labels + (1.0 - lam) * other.labels,
    )


def cutmix(batch: Batch, key: jax.Array, alpha: float = 1.0) -> Batch:
    k_perm, k_lam, k_mod, k_start = jax.random.split(key, 4)
    j = _partner(k_perm, batch)
    other = jax.tree_util.tree_map(lambda a: a[j], batch)
    names = [m for m in MODALITIES if batch.inputs[m].shape[-1] > 0]
    widths = jnp.asarray([batch.inputs[m].shape[-1] for m in names], jnp.float32)
    chosen = jax.random.randint(k_mod, (batch.size,), 0, len(names))
    lam = jax.random.beta(k_lam, alpha, alpha, (batch.size,))
    length = jnp.round((1.0 - lam) * widths[chosen])
    start = jnp.floor(jax.random.uniform(k_start, (batch.size,)) * (widths[chosen] - length + 1.0))
    inputs, masks = dict(batch.inputs), dict(batch.feature_masks)
    modality_mask = jnp.asarray(batch.modality_mask)
    for idx, m in enumerate(names):
        pos = jnp.arange(batch.inputs[m].shape[-1])[None, :]
        block = (chosen[:, None] == idx) & (pos >= start[:, None]) & (pos < (start + length)[:, None])  # [B, D]
        block = block[:, None, :]
        inputs[m] = jnp.where(block, other.inputs[m], batch.inputs[m])
        masks[m] = jnp.where(block, other.feature_masks[m], batch.feature_masks[m])
        took = ((chosen == idx) & (length > 0))[:, None]
        mi = MODALITIES.index(m)
        present = jnp.maximum(batch.modality_mask[..., mi], jnp.where(took, other.modality_mask[..., mi], 0.0))
        modality_mask = modality_mask.at[..., mi].set(present * batch.visit_mask)
    share = 1.0 - length / widths.sum()
    return batch.replace(inputs=inputs, feature_masks=masks, modality_mask=modality_mask,
                         targets=share * batch.targets + (1.0 - share) * other.targets,
                         labels=share * batch.labels + (1.0 - share) * other.labels)


def drop_modalities(batch: Batch, dropped: jax.Array) -> Batch:
    """Batch with modality m removed for subject b wherever `dropped[b, m]` (all visits)."""
    keep = 1.0 - dropped.astype(jnp.float32)  # [B, M]
    inputs, masks = {}, {}
    for i, m in enumerate(MODALITIES):
        k = keep[:, i][:, None, None]
        inputs[m] = (batch.inputs[m] * k).astype(batch.inputs[m].dtype)
        masks[m] = batch.feature_masks[m] * k
    lifestyle = keep[:, MODALITIES.index("lifestyle")][:, None, None]
    return batch.replace(inputs=inputs, feature_masks=masks, modality_mask=batch.modality_mask * keep[:, None, :],
                         categorical=(batch.categorical * lifestyle).astype(batch.categorical.dtype))


def modality_dropout(batch: Batch, key: jax.Array, rate: float = 0.25) -> Batch:
    present = (batch.modality_mask * batch.visit_mask[..., None]).max(axis=1) > 0  # [B, M]
    dropped = jax.random.bernoulli(key, rate, present.shape) & present
    left = (present & ~dropped).any(axis=1, keepdims=True)
    return drop_modalities(batch, dropped & left)


def rand_augment(batch: Batch, key: jax.Array, num_ops: int = 2, magnitude: float = 5.0) -> Batch:
    if not 0.0 <= magnitude <= 10.0:
        raise ValueError(f"rand_augment magnitude must be in [0, 10], got {magnitude!r}")
    strength = 0.03 * magnitude
    k_ops, *keys = jax.random.split(key, 1 + 3 * len(batch.inputs))
    ops = jax.random.randint(k_ops, (batch.size, num_ops), 0, len(RAND_AUGMENT_OPS))
    use = [(ops == i).any(axis=1)[:, None, None] for i in range(len(RAND_AUGMENT_OPS))]
    inputs, masks = {}, {}
    for n, m in enumerate(batch.inputs):
        x, mask = batch.inputs[m], batch.feature_masks[m]
        k_noise, k_scale, k_mask = keys[3 * n:3 * n + 3]
        noisy = x + strength * jax.random.normal(k_noise, x.shape) * mask
        x = jnp.where(use[0], noisy, x)
        factor = 1.0 + jax.random.uniform(k_scale, (x.shape[0], 1, x.shape[2]), minval=-strength, maxval=strength)
        x = jnp.where(use[1], x * factor, x)
        hidden = use[2] & jax.random.bernoulli(k_mask, strength, x.shape)
        mask = jnp.where(hidden, 0.0, mask)
        inputs[m], masks[m] = (x * mask).astype(batch.inputs[m].dtype), mask.astype(batch.feature_masks[m].dtype)
    return batch.replace(inputs=inputs, feature_masks=masks)


def smooth_labels(labels: jax.Array, epsilon: float) -> jax.Array:
    """Binary targets pulled toward 1/2: y (1 - eps) + eps / 2."""
    return labels * (1.0 - epsilon) + 0.5 * epsilon
