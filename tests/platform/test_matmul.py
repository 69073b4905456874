"""platform/matmul.py: the projections' matmul with its weight gradient written as x^T dy."""

import contextlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import print_saved_residuals

from hamnet_jax.models import logical
from hamnet_jax.models.layers import BlockConfig, GroupedDense, attention_block
from hamnet_jax.platform.matmul import matmul, without_gradient_rule
from hamnet_jax.training.steps import CPU_STEP_OPTIONS


@pytest.mark.parametrize("x_shape, w_shape, batch_dims, reference", [
    ((8, 6), (6, 3), 0, "nf,fe->ne"),
    ((5, 7, 6), (6, 3), 0, "nkf,fe->nke"),
    ((4, 9, 6), (4, 6, 3), 1, "gnf,gfe->gne"),
])
def test_values_and_gradients_match_the_einsum(x_shape, w_shape, batch_dims, reference):
    kx, kw = jax.random.split(jax.random.key(0))
    x, w = jax.random.normal(kx, x_shape), jax.random.normal(kw, w_shape)
    ours = jax.value_and_grad(lambda x, w: jnp.sin(matmul(x, w, batch_dims)).sum(), (0, 1))(x, w)
    theirs = jax.value_and_grad(lambda x, w: jnp.sin(jnp.einsum(reference, x, w)).sum(), (0, 1))(x, w)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_gradients_keep_the_operands_dtypes():
    x, w = jnp.ones((4, 8), jnp.bfloat16), jnp.ones((8, 2), jnp.bfloat16)
    dx, dw = jax.grad(lambda x, w: matmul(x, w).astype(jnp.float32).sum(), (0, 1))(x, w)
    assert dx.dtype == dw.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(dw, np.float32), np.full((8, 2), 4.0))


def test_dense_and_grouped_dense_run_through_it():
    dense = logical.dense(5, ("embed", "mlp"), jnp.float32, "fc")
    x = jax.random.normal(jax.random.key(1), (3, 4, 6))
    params = dense.init(jax.random.key(2), x)
    kernel, bias = (getattr(params["params"][k], "value", params["params"][k]) for k in ("kernel", "bias"))
    np.testing.assert_allclose(np.asarray(dense.apply(params, x)), np.asarray(x @ kernel + bias), rtol=1e-6)
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: dense.apply(p, x).sum()))(params))
    assert "custom_vjp_call" in jaxpr
    grouped = GroupedDense(5)
    tokens = jax.random.normal(jax.random.key(3), (3, 4, 6))
    gp = grouped.init(jax.random.key(4), tokens)
    assert "custom_vjp_call" in str(jax.make_jaxpr(lambda p: grouped.apply(p, tokens))(gp))


def eigen_dots(hlo: str) -> list[str]:
    """The compiled HLO's top-level `dot` instructions: matmuls XLA:CPU gives to Eigen (the
    ones it gives YNNPACK are `ynn_fusion`s)."""
    entry = hlo[hlo.index("\nENTRY"):]
    return re.findall(r"\n\s*(?:ROOT )?%(dot[\w.]*) = \S+ dot\(", entry)


@pytest.mark.parametrize("dot_general", ["matmul", "lax.dot_general"])
def test_weight_gradients_go_to_ynnpack(dot_general):
    """The weight gradients of feed-forward layers over tokens ([rows, tokens, width], as in
    the token encoders and the fusion) are YNNPACK matmuls; with the plain product and JAX's
    own transpose rule (`without_gradient_rule`) XLA:CPU gives them to Eigen (the control
    case, which shows the check can fail)."""
    if jax.default_backend() != "cpu":
        pytest.skip("YNNPACK and Eigen are XLA:CPU's")
    mlp = nn.Sequential([logical.dense(64, ("embed", "mlp"), jnp.float32, "fc1"), nn.gelu,
                         logical.dense(32, ("mlp", "embed"), jnp.float32, "fc2")])
    x = jax.random.normal(jax.random.key(0), (64, 16, 32))
    params = mlp.init(jax.random.key(1), x)
    grad = jax.grad(lambda p, x: (mlp.apply(p, x) ** 2).sum())
    with without_gradient_rule() if dot_general == "lax.dot_general" else contextlib.nullcontext():
        hlo = jax.jit(grad, compiler_options=CPU_STEP_OPTIONS).lower(params, x).compile().as_text()
    assert (eigen_dots(hlo) == []) == (dot_general == "matmul"), eigen_dots(hlo)


def test_save_dots_remat_keeps_the_products(capsys):
    block = attention_block("save_dots")(BlockConfig(num_heads=2))
    x, mask = jnp.ones((4, 8, 16)), jnp.ones((4, 8))
    params = block.init(jax.random.key(0), x, mask, True)
    print_saved_residuals(lambda p: block.apply(p, x, mask, True).sum(), params)
    saved = capsys.readouterr().out
    assert saved.count("named 'matmul'") == 4, saved  # gate_attn, fc1, fc2, gate_mlp


@pytest.mark.parametrize("x_shape, w_shape, batch_dims", [((5, 7, 6), (6, 3), 0), ((4, 9, 6), (4, 6, 3), 1)])
def test_without_gradient_rule_traces_the_plain_product(x_shape, w_shape, batch_dims):
    kx, kw = jax.random.split(jax.random.key(5))
    x, w = jax.random.normal(kx, x_shape), jax.random.normal(kw, w_shape)
    with without_gradient_rule():
        jaxpr = str(jax.make_jaxpr(lambda x, w: matmul(x, w, batch_dims))(x, w))
        plain = np.asarray(matmul(x, w, batch_dims))
    assert "custom_vjp_call" not in jaxpr and "dot_general" in jaxpr
    np.testing.assert_allclose(plain, np.asarray(matmul(x, w, batch_dims)), rtol=1e-6)
    assert "custom_vjp_call" in str(jax.make_jaxpr(lambda x, w: matmul(x, w, batch_dims))(x, w))
