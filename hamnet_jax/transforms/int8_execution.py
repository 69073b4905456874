"""Run HAMNet on quantized weights without changing the model code.

A Flax method interceptor takes over the projections (`nn.Dense`, `nn.DenseGeneral`,
`GroupedDense`) whose kernel has a scale in the `"quant"` variable collection:

* `weight_only` int8 codes in memory, dequantized to float for the matmul;
* `dynamic`     activations quantized per row at run time (symmetric int8), then
                `lax.dot_general` on int8 x int8 with int32 accumulation, rescaled;
* `static`      as `dynamic` with one input scale per layer calibrated beforehand
                (`calibrate`: min-max or a percentile of |x| over calibration batches);
* `fake`        float weights and activations passed through quantize-dequantize with a
                straight-through gradient: quantization-aware training of the dynamic path.

Use: `with int8_mode("dynamic"): model.apply({"params": q, "quant": scales}, batch)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hamnet_jax.models.layers import GroupedDense
from hamnet_jax.transforms.quantization import fake_quant, input_axes, qmax

EXECUTION_MODES = ("weight_only", "dynamic", "static", "fake")
ACT_BITS = 8


def _contracted(module: nn.Module) -> int:
    """How many trailing input axes the projection contracts."""
    if isinstance(module, nn.DenseGeneral):
        return len(module.axis) if isinstance(module.axis, tuple) else 1
    return 1


def _act_scale(x: jax.Array, nc: int) -> jax.Array:
    """Per-row symmetric scale over the contracted axes (keepdims), never zero."""
    amax = jnp.max(jnp.abs(x), axis=tuple(range(x.ndim - nc, x.ndim)), keepdims=True)
    return jnp.where(amax > 0, amax / qmax(ACT_BITS), 1.0)


def _quant_act(x: jax.Array, scale: jax.Array) -> jax.Array:
    return jnp.clip(jnp.round(x / scale), -qmax(ACT_BITS), qmax(ACT_BITS)).astype(jnp.int8)


def _project(module: nn.Module, x: jax.Array, kernel: jax.Array, preferred: Any = None) -> jax.Array:
    """x @ kernel the way `module` contracts (GroupedDense: one map per token group)."""
    if isinstance(module, GroupedDense):
        out = jax.lax.dot_general(x, kernel, (((2,), (1,)), ((1,), (0,))), preferred_element_type=preferred)
        return jnp.swapaxes(out, 0, 1)  # [G, N, E] -> [N, G, E]
    nc = _contracted(module)
    dims = ((tuple(range(x.ndim - nc, x.ndim)), tuple(range(nc))), ((), ()))
    return jax.lax.dot_general(x, kernel, dims, preferred_element_type=preferred)


def _out_scale(module: nn.Module, w_scale: jax.Array, kernel_shape: tuple[int, ...]) -> jax.Array:
    """Weight scale broadcastable against the projection's output."""
    if isinstance(module, GroupedDense):
        return w_scale[:, 0, :]  # [G, 1, E] -> [G, E]
    return w_scale.reshape(kernel_shape[_contracted(module):])


def _row_scale(module: nn.Module, x_scale: jax.Array, out_ndim_extra: int) -> jax.Array:
    """Activation scale (keepdims over contracted axes) broadcastable against the output."""
    if isinstance(module, GroupedDense):
        return x_scale  # [N, G, 1]
    nc = _contracted(module)
    lead = x_scale.reshape(x_scale.shape[: x_scale.ndim - nc]) if x_scale.ndim else x_scale
    return jnp.reshape(lead, jnp.shape(lead) + (1,) * out_ndim_extra)


def _with_bias(module: nn.Module, y: jax.Array) -> jax.Array:
    bias = module.get_variable("params", "bias")
    return y if bias is None else y + bias.astype(y.dtype)


def _fake(x: jax.Array, q: jax.Array) -> jax.Array:
    return x + jax.lax.stop_gradient(q - x)


def _int8_call(mode: str, module: nn.Module, x: jax.Array) -> jax.Array:
    kernel = module.get_variable("params", "kernel")
    w_scale = module.get_variable("quant", "kernel_scale")
    x = x.astype(jnp.float32)
    extra = kernel.ndim - (2 if isinstance(module, GroupedDense) else _contracted(module))
    if mode == "weight_only":
        y = _project(module, x, kernel.astype(jnp.float32) * w_scale)
        return _with_bias(module, y)
    if mode == "fake":  # kernel is float and still training: scale from its current values
        path = "/".join(module.path) + "/kernel"
        bits = int(module.get_variable("quant", "kernel_bits", ACT_BITS))
        w = fake_quant(kernel, input_axes(path, kernel.ndim), bits)
        xs = jax.lax.stop_gradient(_act_scale(x, 1 if isinstance(module, GroupedDense) else _contracted(module)))
        xq = _fake(x, _quant_act(x, xs).astype(jnp.float32) * xs)
        return _with_bias(module, _project(module, xq, w))
    if mode == "dynamic":
        x_scale = _act_scale(x, 1 if isinstance(module, GroupedDense) else _contracted(module))
    else:
        x_scale = module.get_variable("quant", "input_scale")
        if x_scale is None:
            raise ValueError(f"static int8 execution: layer {'/'.join(module.path)} has no calibrated "
                             "input_scale; run calibrate() first")
    acc = _project(module, _quant_act(x, x_scale), kernel, preferred=jnp.int32)
    y = acc.astype(jnp.float32) * _out_scale(module, w_scale, kernel.shape)
    y = y * (x_scale if isinstance(module, GroupedDense) or x_scale.ndim == 0
             else _row_scale(module, x_scale, extra))
    return _with_bias(module, y)


PROJECTIONS = (nn.Dense, nn.DenseGeneral, GroupedDense)


def interceptor(mode: str) -> Callable:
    if mode not in EXECUTION_MODES:
        raise ValueError(f"int8 execution mode must be one of {list(EXECUTION_MODES)}, got {mode!r}")

    def intercept(next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
        module = context.module
        if (context.method_name != "__call__" or not isinstance(module, PROJECTIONS)
                or module.get_variable("quant", "kernel_scale") is None):
            return next_fun(*args, **kwargs)
        return _int8_call(mode, module, args[0])

    return intercept


@contextlib.contextmanager
def int8_mode(mode: str) -> Iterator[None]:
    """Inside this context (also while tracing under jit), quantized projections run on
    the chosen int8 path."""
    with nn.intercept_methods(interceptor(mode)):
        yield


def _record_inputs(percentile: float) -> Callable:
    def intercept(next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
        module = context.module
        if context.method_name == "__call__" and isinstance(module, PROJECTIONS):
            a = jnp.abs(args[0].astype(jnp.float32)).ravel()
            module.sow("calibration", "absmax", a.max())
            module.sow("calibration", "percentile", jnp.percentile(a, percentile))
        return next_fun(*args, **kwargs)

    return intercept


def calibrate(apply_fn: Callable, params: Any, scales: Any, batches: list[Any], method: str = "minmax",
              percentile: float = 99.99) -> Any:
    """`scales` plus one static `input_scale` per quantized layer from calibration batches.

    `minmax`: the largest |x| seen; `percentile`: the mean over batches of the given
    percentile of |x| (clips rare outliers to spend the int8 range on typical values).
    `apply_fn(variables, batch, mutable=...)` is the model's apply (float params).
    """
    if method not in ("minmax", "percentile"):
        raise ValueError(f"calibration method must be 'minmax' or 'percentile', got {method!r}")
    if not batches:
        raise ValueError("calibration needs at least one batch")
    key = "absmax" if method == "minmax" else "percentile"
    reduce = jnp.maximum if method == "minmax" else jnp.add

    @jax.jit
    def stats(batch: Any) -> Any:
        with nn.intercept_methods(_record_inputs(percentile)):
            _, state = apply_fn({"params": params}, batch, mutable=["calibration"])
        return state["calibration"]

    total = None
    for batch in batches:
        s = stats(batch)
        total = s if total is None else jax.tree_util.tree_map(reduce, total, s)

    def merge(sc: dict, st: dict) -> dict:
        out = dict(sc)
        for name, value in sc.items():
            if isinstance(value, dict):
                out[name] = merge(value, st.get(name, {}))
        if "kernel_scale" in sc:
            amax = st[key][0] / (1 if method == "minmax" else len(batches))
            out["input_scale"] = jnp.where(amax > 0, amax / qmax(ACT_BITS), 1.0)
        return out

    return merge(scales, total)
