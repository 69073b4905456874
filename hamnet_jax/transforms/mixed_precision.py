"""Per-layer bit widths chosen by measured sensitivity.

For every layer the default rules would quantize, quantize that layer alone (weights,
per-channel symmetric) at each candidate width and measure how much the validation loss
moves; the layer gets the narrowest width whose loss increase stays within `tolerance`,
and stays float when none does (the HAWQ idea of Dong et al. 2019, measured directly
instead of through Hessian traces: the model is small enough to evaluate every layer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

from hamnet_jax.transforms.quantization import (
    QUANTIZE_RULES, channel_scale, dequantize, input_axes, quantize, quantize_bits,
)
from hamnet_jax.transforms.select import Pattern, path_str


def quantize_one(params: Any, target: str, bits: int) -> Any:
    """Params with only the leaf at path `target` quantized-dequantized to `bits`."""
    def visit(path: tuple, w: Any) -> Any:
        name = path_str(path)
        if name != target:
            return w
        s = channel_scale(w, input_axes(name, w.ndim), bits)
        return dequantize(quantize(w, s, bits), s, w.dtype)

    return jax.tree_util.tree_map_with_path(visit, params)


def sensitivity_bits(params: Any, loss: Callable[[Any], float], candidates: Sequence[int] = (4, 8),
                     tolerance: float = 0.01,
                     rules: Sequence[tuple[Pattern, int]] = QUANTIZE_RULES) -> tuple[Any, dict[str, Any]]:
    """(bits tree, report). `loss(params)` is the validation loss (jit it: the tree keeps
    its shapes, so it compiles once). Report: base loss and, per layer, the loss increase
    at each candidate width and the width chosen (0 = float)."""
    if tolerance < 0:
        raise ValueError(f"sensitivity tolerance must be >= 0, got {tolerance!r}")
    widths = sorted(int(b) for b in candidates)
    if not widths or any(not 2 <= b <= 8 for b in widths):
        raise ValueError(f"candidate bit widths must be in 2..8, got {list(candidates)}")
    base = float(loss(params))
    default = quantize_bits(params, rules)
    chosen: dict[str, int] = {}
    layers: dict[str, dict[str, float]] = {}
    for path, b in jax.tree_util.tree_leaves_with_path(default):
        name = path_str(path)
        if not b:
            continue
        deltas = {w: float(loss(quantize_one(params, name, w))) - base for w in widths}
        chosen[name] = next((w for w in widths if deltas[w] <= tolerance), 0)
        layers[name] = {**{f"delta_{w}bit": d for w, d in deltas.items()}, "bits": chosen[name]}
    bits = jax.tree_util.tree_map_with_path(lambda p, _: chosen.get(path_str(p), 0), default)
    return bits, {"base_loss": base, "tolerance": tolerance, "layers": layers}
