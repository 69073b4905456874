"""Select parameters by path: rules over key paths -> a tree of values.

One helper serves everything that treats parameters differently by role (weight decay
now; pruning, quantization, freezing and sharding later). Rules are `(pattern, value)`
pairs; a pattern is a regex searched in the '/'-joined path (e.g.
`fusion/block_0/attn/query/kernel`) or a predicate on that path. The first match wins;
a parameter that no rule covers is an error naming its path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax

Pattern = str | Callable[[str], bool]


def path_str(path: tuple) -> str:
    """'/'-joined names of a jax key path."""
    parts = []
    for k in path:
        parts.append(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))))
    return "/".join(parts)


def leaves_by_path(tree: Any) -> dict[str, Any]:
    """{'/'-joined path: leaf} of a pytree, in leaf order."""
    return {path_str(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def select_by_path(tree: Any, rules: Sequence[tuple[Pattern, Any]]) -> Any:
    """Tree shaped like `tree` holding, per leaf, the value of the first matching rule."""
    compiled = [(re.compile(p).search if isinstance(p, str) else p, v) for p, v in rules]

    def pick(path: tuple, _leaf: Any) -> Any:
        name = path_str(path)
        for match, value in compiled:
            if match(name):
                return value
        raise ValueError(f"parameter {name!r} is matched by no rule; add a catch-all rule such as ('.*', ...)")

    return jax.tree_util.tree_map_with_path(pick, tree)


# biases, LayerNorm scales and embeddings' padding are not decayed (Loshchilov & Hutter 2019
# decay weights that multiply inputs, not offsets or normalization gains)
NO_DECAY_RULES: tuple[tuple[Pattern, Any], ...] = (
    (r"(^|/)bias$", False),
    (r"(^|/)scale$", False),
    (r"modality_embed$", False),
    (r".*", True),
)


def weight_decay_mask(params: Any) -> Any:
    return select_by_path(params, NO_DECAY_RULES)
