"""Dropout variants, DropConnect and stochastic depth as pure functions, plus
`training_behaviour`: a wrapper that runs any HAMNet apply with them.

* `dropout(x, rate, key, kind)`: `standard` (Srivastava et al. 2014, inverted scaling),
  `gaussian` (multiplicative N(1, rate / (1 - rate)) noise, same paper, section 10),
  `alpha` (Klambauer et al. 2017, SELU networks: dropped units go to the negative
  saturation value and an affine map restores mean and variance).
* `drop_connect(params, key, rate, selected)`: Wan et al. 2013, drop weights instead of
  activations; applied to the params of one step before the forward pass.
* Stochastic depth (Huang et al. 2016): every gated attention block's residual update is
  dropped per example with a rate that grows linearly with depth (p_l = p * l / L over
  the encoder, fusion and temporal blocks in order), scaled by 1 / (1 - p_l) when kept.

The dropout kind and stochastic depth change no parameters, so they are applied by
intercepting Flax method calls (`nn.Dropout`, `GatedAttentionBlock`) around the model's
apply instead of through new config fields: any trained model takes them, and evaluation
(`deterministic=True`) is untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.layers import GatedAttentionBlock

DROPOUT_KINDS: tuple[str, ...] = ("standard", "gaussian", "alpha")
SELU_ALPHA_PRIME = -1.0507009873554805 * 1.6732632423543772  # -lambda * alpha


def dropout(x: jax.Array, rate: float, key: jax.Array, kind: str = "standard") -> jax.Array:
    """One dropout draw of `kind` over `x` (shape and dtype kept); identity at rate 0."""
    if kind not in DROPOUT_KINDS:
        raise ValueError(f"unknown dropout kind {kind!r}; expected one of {list(DROPOUT_KINDS)}")
    if rate == 0.0:
        return x
    if kind == "gaussian":
        noise = 1.0 + jnp.sqrt(rate / (1.0 - rate)) * jax.random.normal(key, x.shape)
        return (x * noise).astype(x.dtype)
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    if kind == "standard":
        return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)
    a = ((1.0 - rate) * (1.0 + rate * SELU_ALPHA_PRIME**2)) ** -0.5
    b = -a * SELU_ALPHA_PRIME * rate
    return (a * jnp.where(keep, x, SELU_ALPHA_PRIME) + b).astype(x.dtype)


def drop_connect(params: Any, key: jax.Array, rate: float, selected: Any) -> Any:
    """Params with each selected weight zeroed with probability `rate` (the rest scaled by
    1 / (1 - rate)); `selected` is a boolean tree like the params (e.g. from select_by_path)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    chosen = treedef.flatten_up_to(selected)
    keys = jax.random.split(key, len(leaves))
    out = [dropout(w, rate, k) if use else w for w, use, k in zip(leaves, chosen, keys, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, out)


def block_depths(config: HAMNetConfig) -> dict[tuple[str, ...], int]:
    """Depth (1-based) of every gated attention block by its scope path; the encoders'
    token blocks sit at depth 1, then fusion, then temporal."""
    depths: dict[tuple[str, ...], int] = {(f"{m}_encoder", "block"): 1 for m in ("imaging", "genetic")}
    for i in range(config.num_layers):
        depths[("fusion", f"block_{i}")] = 2 + i
    for i in range(config.temporal_layers):
        depths[("temporal", f"block_{i}")] = 2 + config.num_layers + i
    return depths


def _call_arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def training_behaviour(apply_fn: Callable, config: HAMNetConfig, dropout_kind: str = "standard",
                       stochastic_depth: float = 0.0) -> Callable:
    """`apply_fn` (a HAMNet apply) with the dropout kind and stochastic depth switched in."""
    if dropout_kind not in DROPOUT_KINDS:
        raise ValueError(f"unknown dropout kind {dropout_kind!r}; expected one of {list(DROPOUT_KINDS)}")
    if not 0.0 <= stochastic_depth < 1.0:
        raise ValueError(f"stochastic_depth must be in [0, 1), got {stochastic_depth!r}")
    if dropout_kind == "standard" and stochastic_depth == 0.0:
        return apply_fn
    depths = block_depths(config)
    total = max(depths.values())

    def interceptor(next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
        module = context.module
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        if isinstance(module, nn.Dropout) and dropout_kind != "standard":
            deterministic = nn.merge_param("deterministic", module.deterministic,
                                           _call_arg(args, kwargs, 1, "deterministic"))
            if deterministic or module.rate == 0.0:
                return args[0]
            return dropout(args[0], module.rate, module.make_rng("dropout"), dropout_kind)
        if isinstance(module, GatedAttentionBlock) and stochastic_depth > 0.0:
            x = args[0]
            out = next_fun(*args, **kwargs)
            if _call_arg(args, kwargs, 2, "deterministic", True):
                return out
            where = tuple(module.scope.path[-2:])
            if where not in depths:
                raise ValueError(f"stochastic depth: attention block at {'/'.join(where)} is not in the "
                                 f"model's block order {sorted(depths)}")
            rate = stochastic_depth * depths[where] / total
            keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
            return x + jnp.where(keep, (out - x) / (1.0 - rate), 0.0).astype(out.dtype)
        return next_fun(*args, **kwargs)

    def apply(*args: Any, **kwargs: Any) -> Any:
        with nn.intercept_methods(interceptor):
            return apply_fn(*args, **kwargs)

    return apply
