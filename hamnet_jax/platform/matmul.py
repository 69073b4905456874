"""The projections' matmul, x @ W, with its weight gradient written as x^T dy.

JAX's transpose rule for `lax.dot_general` gives the weight gradient of y = x @ W as
(dy^T x)^T: a dot, then a transpose. XLA folds the transpose into the dot by swapping its
operands, which leaves the dot's left operand column-major. XLA:CPU's YNNPACK matmuls
(multi-threaded) take a row-major left operand only, so XLA:CPU runs the dot in Eigen
instead, on transposed operands, and on one thread under the train step's options
(`training.steps.CPU_STEP_OPTIONS`). Written as x^T dy, XLA copies the stored activation
transposed, and the dot goes to YNNPACK. This holds for the token encoders' and the fusion's
activations, whose rows span two axes; one-axis rows may still go to Eigen with the
transpose folded in (tests/platform/test_matmul.py). In the standard tier's step all 30 weight
gradients that XLA:CPU ran in Eigen became YNNPACK matmuls: the gates, the feed-forward
layers, the fusion and temporal blocks, the grouped token projections, and the clinical,
lifestyle and head layers. Measured: experiments/bench_train.py's "fp32, weight gradients as
JAX transposes them" row.

The values are the same sums, possibly in another order. The product carries the
checkpoint name `MATMUL_NAME`, so remat's "save_dots" policy keeps it as it keeps any
other dot's output (`models.layers.REMAT_POLICY_FNS`). Graphs that are never differentiated
(the ONNX export) trace it under `without_gradient_rule()`: the plain product, with no
custom_vjp call in the graph.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

MATMUL_NAME = "matmul"  # the checkpoint name of every `matmul` product
_PLAIN: contextvars.ContextVar[bool] = contextvars.ContextVar("plain_matmul", default=False)


@contextlib.contextmanager
def without_gradient_rule() -> Iterator[None]:
    """Trace `matmul` as the plain product in this context (this thread's), which JAX's own
    transpose rule differentiates: for graphs that are never differentiated (the ONNX
    export), and for experiments/bench_train.py's A/B row."""
    token = _PLAIN.set(True)
    try:
        yield
    finally:
        _PLAIN.reset(token)


def _dimension_numbers(ndim: int, batch_dims: int) -> tuple:
    batch = tuple(range(batch_dims))
    return ((ndim - 1,), (batch_dims,)), (batch, batch)


def matmul(x: jax.Array, w: jax.Array, batch_dims: int = 0, precision: Any = None) -> jax.Array:
    """x [*B, *rows, in] @ w [*B, in, out] -> [*B, *rows, out], the first `batch_dims`
    axes of both a batch (one weight matrix per batch index: `GroupedDense`'s groups)."""
    if _PLAIN.get():
        return _plain_product(x, w, batch_dims, precision)
    return checkpoint_name(_matmul(x, w, batch_dims, precision), MATMUL_NAME)


def _plain_product(x: jax.Array, w: jax.Array, batch_dims: int, precision: Any) -> jax.Array:
    """The product without the gradient rule; a batched one as `jnp.einsum`, the form
    jax2onnx writes as a MatMul that ONNX Runtime's dynamic int8 quantizer accepts (it
    rejects the one jax2onnx writes for a bare batched `lax.dot_general`)."""
    if batch_dims:
        letters = "abcdefghijklmnopqrstuvw"
        batch, rows = letters[:batch_dims], letters[batch_dims:x.ndim - 1]
        return jnp.einsum(f"{batch}{rows}y,{batch}yz->{batch}{rows}z", x, w, precision=precision)
    return jax.lax.dot_general(x, w, _dimension_numbers(x.ndim, batch_dims), precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _matmul(x: jax.Array, w: jax.Array, batch_dims: int, precision: Any) -> jax.Array:
    return jax.lax.dot_general(x, w, _dimension_numbers(x.ndim, batch_dims), precision)


def _matmul_fwd(x: jax.Array, w: jax.Array, batch_dims: int, precision: Any) -> tuple[jax.Array, tuple]:
    return _matmul(x, w, batch_dims, precision), (x, w)


def _matmul_bwd(batch_dims: int, precision: Any, residuals: tuple, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, w = residuals
    batch = tuple(range(batch_dims))
    rows = tuple(range(batch_dims, x.ndim - 1))
    dx = jax.lax.dot_general(dy, w, (((dy.ndim - 1,), (w.ndim - 1,)), (batch, batch)), precision)
    dw = jax.lax.dot_general(x, dy, ((rows, rows), (batch, batch)), precision)  # x^T dy: [*B, in, out]
    return dx.astype(x.dtype), dw.astype(w.dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def dense_dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers: Any, precision: Any = None,
                      preferred_element_type: Any = None) -> jax.Array:
    """`lax.dot_general` for `nn.Dense(dot_general=...)`: the x @ W that Dense asks for runs
    through `matmul`; any other contraction goes to `lax.dot_general` unchanged."""
    if (rhs.ndim == 2 and preferred_element_type is None
            and dimension_numbers == (((lhs.ndim - 1,), (0,)), ((), ()))):
        return matmul(lhs, rhs, 0, precision)
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision, preferred_element_type=preferred_element_type)
