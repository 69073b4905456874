"""Quantization of parameter pytrees: casting, symmetric per-channel integer weights,
fake quantization with a straight-through estimator, selected by parameter path.

Weights are quantized symmetrically per output channel: scale = max|w| / (2^(b-1) - 1)
over the kernel's input axes, q = clip(round(w / scale)), so w - q * scale is at most half
a scale step. Which axes are "input" depends on the layer (see `input_axes`). What is
quantized is chosen by path rules: the kernels of dense, multi-head and grouped
projections by default (the layers the int8 execution path runs), never norms, biases,
embeddings or the depthwise convolution (tiny, and read by no matmul).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from hamnet_jax.transforms.select import Pattern, path_str, select_by_path

# bits per selected kernel; 0 = keep float
QUANTIZE_RULES: tuple[tuple[Pattern, int], ...] = (
    (r"depthwise_conv/", 0),
    (r"(^|/)kernel$", 8),
    (r".*", 0),
)


def quantize_bits(params: Any, rules: Sequence[tuple[Pattern, int]] = QUANTIZE_RULES) -> Any:
    """Tree of bit widths per parameter (0 = stays float)."""
    bits = select_by_path(params, rules)
    for b in jax.tree_util.tree_leaves(bits):
        if b not in (0, 2, 3, 4, 5, 6, 7, 8):
            raise ValueError(f"quantization bit width must be 0 (float) or 2..8, got {b!r}")
    return bits


def input_axes(path: str, ndim: int) -> tuple[int, ...]:
    """Axes a kernel contracts with its input (the scale is shared along them).

    Dense [in, out]: (0,); query/key/value [E, H, D]: (0,); attention out [H, D, E]: (0, 1);
    grouped projection [G, F, E]: (1,) (one scale per group and output channel).
    """
    if path.endswith("group_proj/kernel"):
        return (1,)
    if path.endswith("attn/out/kernel"):
        return (0, 1)
    return (0,) if ndim >= 2 else ()


def qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def channel_scale(w: jax.Array, axes: tuple[int, ...], bits: int) -> jax.Array:
    """Symmetric scale per output channel (keepdims), never zero."""
    amax = jnp.max(jnp.abs(w.astype(jnp.float32)), axis=axes, keepdims=True)
    return jnp.where(amax > 0, amax / qmax(bits), 1.0)


def quantize(w: jax.Array, scale: jax.Array, bits: int) -> jax.Array:
    """Integer codes in int8 (|q| <= 2^(b-1) - 1)."""
    return jnp.clip(jnp.round(w.astype(jnp.float32) / scale), -qmax(bits), qmax(bits)).astype(jnp.int8)


def dequantize(q: jax.Array, scale: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    return (q.astype(jnp.float32) * scale).astype(dtype)


def fake_quant(w: jax.Array, axes: tuple[int, ...], bits: int) -> jax.Array:
    """Quantize-dequantize in the forward pass, identity gradient (straight-through
    estimator, Bengio et al. 2013; the QAT of Jacob et al. 2018)."""
    scale = jax.lax.stop_gradient(channel_scale(w, axes, bits))
    q = dequantize(quantize(w, scale, bits), scale, w.dtype)
    return w + jax.lax.stop_gradient(q - w)


def fake_quant_params(params: Any, bits: Any) -> Any:
    """Params as the quantized model sees them, differentiable straight through."""
    return jax.tree_util.tree_map_with_path(
        lambda p, w, b: fake_quant(w, input_axes(path_str(p), w.ndim), b) if b else w, params, bits)


def quantize_params(params: Any, bits: Any) -> tuple[Any, Any]:
    """(params with int8 codes in place of the selected kernels, scales tree).

    The scales tree mirrors the params' modules with one `<name>_scale` per quantized
    leaf, so it can ride along as a separate variable collection (`"quant"`) when the
    model runs on the int8 path.
    """
    qparams: dict = {}
    scales: dict = {}

    def visit(p: Any, b: Any, qp: dict, sc: dict, prefix: str) -> None:
        for name, value in p.items():
            path = f"{prefix}/{name}" if prefix else name
            if isinstance(value, dict) or hasattr(value, "items"):
                qp[name], sc_child = {}, {}
                visit(value, b[name], qp[name], sc_child, path)
                if sc_child:
                    sc[name] = sc_child
            elif b[name]:
                s = channel_scale(value, input_axes(path, value.ndim), b[name])
                qp[name] = quantize(value, s, b[name])
                sc[f"{name}_scale"] = s
            else:
                qp[name] = value
    visit(params, bits, qparams, scales, "")
    return qparams, scales


def dequantize_params(qparams: Any, scales: Any) -> Any:
    """Float params back from (codes, scales)."""
    def visit(qp: Any, sc: Any) -> dict:
        out = {}
        for name, value in qp.items():
            if hasattr(value, "items"):
                out[name] = visit(value, (sc or {}).get(name))
            elif sc is not None and f"{name}_scale" in sc:
                out[name] = dequantize(value, sc[f"{name}_scale"])
            else:
                out[name] = value
        return out
    return visit(qparams, scales)


def cast_weights(params: Any, dtype: str, rules: Sequence[tuple[Pattern, bool]] = ((r"(^|/)kernel$", True),
                                                                                  (r"(^|/)embedding$", True),
                                                                                  (r".*", False))) -> Any:
    """Selected weights in fp16 / bf16 for storage and compute (norms and biases stay fp32)."""
    if dtype not in ("float16", "bfloat16", "float32"):
        raise ValueError(f"cast dtype must be float16, bfloat16 or float32, got {dtype!r}")
    chosen = select_by_path(params, rules)
    return jax.tree_util.tree_map(lambda p, c: p.astype(dtype) if c else p, params, chosen)
