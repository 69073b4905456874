"""Pruning masks: boolean pytrees shaped like the params, and what they really remove.

A mask leaf is `True` where the weight is kept. What may be pruned is chosen by path
rules (`transforms/select.py`); by default every weight matrix, convolution kernel and
embedding table, never biases, norm gains or the modality type embedding (pruning an
offset or a normalization gain saves nothing and shifts every activation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hamnet_jax.transforms.select import Pattern, path_str, select_by_path

PRUNABLE_RULES: tuple[tuple[Pattern, bool], ...] = (
    (r"(^|/)bias$", False),
    (r"(^|/)scale$", False),
    (r"modality_embed$", False),
    (r"(^|/)(kernel|embedding)$", True),
    (r".*", False),
)


def prunable(params: Any, rules: Sequence[tuple[Pattern, bool]] = PRUNABLE_RULES) -> Any:
    """Boolean tree: which parameters pruning may touch."""
    return select_by_path(params, rules)


def full_masks(params: Any) -> Any:
    """Masks that keep everything."""
    return jax.tree_util.tree_map(lambda p: jnp.ones(p.shape, bool), params)


def apply_masks(params: Any, masks: Any) -> Any:
    """Params with pruned weights set to exactly zero."""
    return jax.tree_util.tree_map(lambda p, m: jnp.where(m, p, jnp.zeros_like(p)), params, masks)


def sparsity_report(params: Any, selected: Any | None = None) -> dict[str, Any]:
    """Zeros per layer and in total, counted on the actual values (not on a mask), so a
    report can never claim sparsity the weights do not have.

    `selected` (boolean tree, default: `prunable(params)`) picks the layers listed and the
    `prunable_sparsity` total; `total_sparsity` counts every parameter.
    """
    selected = prunable(params) if selected is None else selected
    layers: dict[str, dict[str, float]] = {}
    zeros_sel = size_sel = zeros_all = size_all = 0
    leaves = jax.tree_util.tree_leaves_with_path(params)
    for (path, p), sel in zip(leaves, jax.tree_util.tree_leaves(selected), strict=True):
        zeros = int(np.sum(np.asarray(p) == 0))
        zeros_all += zeros
        size_all += p.size
        if sel:
            layers[path_str(path)] = {"zeros": zeros, "size": int(p.size), "sparsity": zeros / max(p.size, 1)}
            zeros_sel += zeros
            size_sel += p.size
    return {"layers": layers, "prunable_sparsity": zeros_sel / max(size_sel, 1),
            "total_sparsity": zeros_all / max(size_all, 1), "nonzero_params": size_all - zeros_all,
            "total_params": size_all}
