"""Weight penalties selected by parameter path, and spectral normalization.

* `l1_penalty`, `l2_penalty`, `elastic_net_penalty` (Zou & Hastie 2005): sums over the
  leaves a boolean `selected` tree marks (build it with `select_by_path`; the default
  rules penalize what weight decay decays: kernels and embeddings, not biases or norms).
* `power_iteration`: the largest singular value of a matrix by power iteration with a
  persistent vector u (Miyato et al. 2018, "Spectral Normalization for GANs").
* `spectral_norm_optax(selected, max_norm)`: an optax transformation that, after the inner
  update, rescales every selected kernel W to W / max(1, sigma(W) / max_norm), with one
  power iteration per step on u vectors kept in its state. This is the projection form
  (Gouk et al. 2021, "Regularisation of neural networks by enforcing Lipschitz
  continuity") rather than Miyato's reparameterization: the stored weights are the
  normalized ones, so export, quantization and serving need no extra op.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from hamnet_jax.transforms.select import Pattern, leaves_by_path, path_str, select_by_path


def _selected_leaves(params: Any, selected: Any) -> list[jax.Array]:
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return [w for w, use in zip(leaves, treedef.flatten_up_to(selected), strict=True) if use]


def l1_penalty(params: Any, selected: Any) -> jax.Array:
    return sum((jnp.abs(w.astype(jnp.float32)).sum() for w in _selected_leaves(params, selected)), jnp.float32(0))


def l2_penalty(params: Any, selected: Any) -> jax.Array:
    return sum((jnp.square(w.astype(jnp.float32)).sum() for w in _selected_leaves(params, selected)), jnp.float32(0))


def elastic_net_penalty(params: Any, selected: Any, l1_ratio: float = 0.5) -> jax.Array:
    if not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"elastic net l1_ratio must be in [0, 1], got {l1_ratio!r}")
    return l1_ratio * l1_penalty(params, selected) + (1.0 - l1_ratio) * l2_penalty(params, selected)


def as_matrix(path: str, w: jax.Array) -> jax.Array:
    """The linear map a kernel applies, as [fan_in, fan_out]: attention output kernels
    [H, D, E] contract their leading axes, every other kernel its first axis."""
    if w.ndim == 2:
        return w
    if path.endswith("out/kernel"):
        return w.reshape(-1, w.shape[-1])
    return w.reshape(w.shape[0], -1)


def power_iteration(w: jax.Array, u: jax.Array, iterations: int = 1) -> tuple[jax.Array, jax.Array]:
    """(sigma_max estimate, updated u) of matrix `w` [m, n]; u has shape [n]."""
    w = w.astype(jnp.float32)

    def body(_, u):
        v = w @ u
        v = v / (jnp.linalg.norm(v) + 1e-12)
        u = w.T @ v
        return u / (jnp.linalg.norm(u) + 1e-12)

    u = jax.lax.fori_loop(0, iterations, body, u)
    return jnp.linalg.norm(w @ u), u


class SpectralNormState(NamedTuple):
    u: dict[str, jax.Array]  # path -> right singular vector estimate of each selected kernel


def spectral_norm_optax(rules: list[tuple[Pattern, Any]] | tuple, max_norm: float = 1.0,
                        iterations: int = 1) -> optax.GradientTransformation:
    """Chain after the optimizer: keeps every kernel selected by `rules` (path rules to
    booleans, first match wins) at spectral norm <= `max_norm`."""
    if max_norm <= 0:
        raise ValueError(f"spectral norm max_norm must be > 0, got {max_norm!r}")

    def chosen(params: Any) -> dict[str, jax.Array]:
        flags = leaves_by_path(select_by_path(params, rules))
        return {p: w for p, w in leaves_by_path(params).items() if flags[p]}

    def init(params: Any) -> SpectralNormState:
        u = {}
        for i, (path, w) in enumerate(chosen(params).items()):
            n = as_matrix(path, w).shape[1]
            u[path] = jax.random.normal(jax.random.fold_in(jax.random.key(0), i), (n,)) / jnp.sqrt(n)
        return SpectralNormState(u)

    def update(updates: Any, state: SpectralNormState, params: Any = None) -> tuple[Any, SpectralNormState]:
        if params is None:
            raise ValueError("spectral_norm_optax needs params in update()")
        new_params = optax.apply_updates(params, updates)
        new_flat = leaves_by_path(new_params)
        scales, new_u = {}, {}
        for path, u in state.u.items():
            sigma, new_u[path] = power_iteration(as_matrix(path, new_flat[path]), u, iterations)
            scales[path] = jnp.maximum(1.0, sigma / max_norm)

        def project(path_keys: tuple, u: jax.Array, w: jax.Array, p: jax.Array) -> jax.Array:
            path = path_str(path_keys)
            return (w / scales[path]).astype(w.dtype) - p if path in scales else u

        out = jax.tree_util.tree_map_with_path(project, updates, new_params, params)
        return out, SpectralNormState(new_u)

    return optax.GradientTransformation(init, update)
