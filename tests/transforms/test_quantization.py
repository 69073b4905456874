"""Quantization: quantizer properties (hypothesis), the int8 execution paths, calibration,
sensitivity widths and the compressed checkpoint."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamnet_jax.data.batch import random_batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, init_params
from hamnet_jax.export.compressed_checkpoint import (
    float_checkpoint_bytes, load_compressed, pack_nibbles, save_compressed, unpack_nibbles,
)
from hamnet_jax.transforms.int8_execution import calibrate, int8_mode
from hamnet_jax.transforms.masks import apply_masks
from hamnet_jax.transforms.mixed_precision import sensitivity_bits
from hamnet_jax.transforms.quantization import (
    cast_weights, channel_scale, dequantize, dequantize_params, fake_quant, fake_quant_params, quantize, quantize_bits,
    quantize_params,
)

CONFIG = HAMNetConfig.from_tier("base", clinical_dim=10, imaging_dim=20, genetic_dim=30, lifestyle_dim=4,
                                imaging_group_size=8, genetic_group_size=16, lifestyle_cardinalities=(3,))
BATCH = random_batch(CONFIG, 8, 3)
MODEL = HAMNet(CONFIG)
PARAMS = init_params(MODEL, BATCH, jax.random.key(0))


@settings(max_examples=20, deadline=None)  # (each new shape compiles: 20 examples ~ 12 s)
@given(rows=st.integers(1, 12), cols=st.integers(1, 12), bits=st.integers(2, 8), seed=st.integers(0, 10_000),
       scale=st.floats(1e-3, 1e3))
def test_quantize_dequantize_error_is_at_most_half_a_step(rows, cols, bits, seed, scale):
    w = jnp.asarray(np.random.default_rng(seed).standard_normal((rows, cols)) * scale, jnp.float32)
    s = channel_scale(w, (0,), bits)
    q = quantize(w, s, bits)
    assert q.dtype == jnp.int8 and int(jnp.abs(q).max()) <= 2 ** (bits - 1) - 1
    err = jnp.abs(dequantize(q, s) - w)
    assert bool(jnp.all(err <= s / 2 * (1 + 1e-5) + 1e-12))


def test_fake_quant_is_straight_through():
    w = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    g = jax.grad(lambda w: (fake_quant(w, (0,), 4) * jnp.arange(4.0)).sum())(w)
    np.testing.assert_array_equal(g, jnp.broadcast_to(jnp.arange(4.0), (3, 4)))
    s = channel_scale(w, (0,), 4)
    np.testing.assert_allclose(fake_quant(w, (0,), 4), dequantize(quantize(w, s, 4), s), atol=1e-7)
    bits = quantize_bits(PARAMS)  # by path rules: the model code is untouched
    faked = fake_quant_params(PARAMS, bits)
    np.testing.assert_allclose(faked["fusion"]["block_0"]["attn"]["out"]["kernel"],
                               dequantize_params(*quantize_params(PARAMS, bits))["fusion"]["block_0"]["attn"]["out"]
                               ["kernel"], atol=1e-6)
    np.testing.assert_array_equal(faked["fusion"]["norm"]["scale"], PARAMS["fusion"]["norm"]["scale"])


def run(mode, params, quant):
    with int8_mode(mode):
        return jax.jit(lambda p, q: MODEL.apply({"params": p, "quant": q}, BATCH)[0])(params, quant)


def test_int8_paths_agree_with_their_float_references():
    codes, scales = quantize_params(PARAMS, quantize_bits(PARAMS))
    assert all(x.dtype == jnp.int8 for x in jax.tree_util.tree_leaves(codes) if x.ndim >= 2 and x.dtype != jnp.float32)
    forward = jax.jit(lambda p: MODEL.apply({"params": p}, BATCH)[0])
    ref = forward(dequantize_params(codes, scales))
    weight_only = run("weight_only", codes, scales)
    np.testing.assert_allclose(weight_only["mean"], ref["mean"], atol=1e-5)
    # real int8 dot_general == float simulation of the same quantization (fake-quant path)
    dynamic, fake = run("dynamic", codes, scales), run("fake", PARAMS, scales)
    np.testing.assert_allclose(dynamic["mean"], fake["mean"], atol=1e-4)
    float_out = forward(PARAMS)
    assert float(jnp.abs(dynamic["mean"] - float_out["mean"]).max()) < 0.1
    with pytest.raises(ValueError, match="input_scale"):
        run("static", codes, scales)
    for method in ("minmax", "percentile"):
        calibrated = calibrate(MODEL.apply, PARAMS, scales, [BATCH], method)
        static = run("static", codes, calibrated)
        assert float(jnp.abs(static["mean"] - float_out["mean"]).max()) < 0.1
    with pytest.raises(ValueError, match="execution mode"):
        int8_mode("int3").__enter__()


def test_qat_gradients_flow_through_fake_quant():
    _, scales = quantize_params(PARAMS, quantize_bits(PARAMS))

    def loss(p):
        with int8_mode("fake"):
            return MODEL.apply({"params": p, "quant": scales}, BATCH)[0]["mean"].sum()

    grads = jax.jit(jax.grad(loss))(PARAMS)
    assert float(jnp.abs(grads["fusion"]["block_0"]["mlp"]["fc1"]["kernel"]).sum()) > 0


def test_checkpoint_round_trip_and_size(tmp_path):
    masks = jax.tree_util.tree_map(lambda p: jnp.asarray(np.random.default_rng(0).random(p.shape) > 0.5)
                                   if p.ndim >= 2 else jnp.ones(p.shape, bool), PARAMS)
    sparse = apply_masks(PARAMS, masks)
    bits = quantize_bits(PARAMS, ((r"fusion/.*kernel$", 4), (r"(^|/)kernel$", 8), (r".*", 0)))
    codes, scales = quantize_params(sparse, bits)
    size = save_compressed(tmp_path / "q.safetensors", codes, scales, bits)
    dense = float_checkpoint_bytes(tmp_path / "f.safetensors", PARAMS)
    assert dense / size > 3.5
    codes2, scales2, bits2 = load_compressed(tmp_path / "q.safetensors")
    for a, b in zip(jax.tree_util.tree_leaves(codes), jax.tree_util.tree_leaves(codes2), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert jax.tree_util.tree_leaves(bits2) == jax.tree_util.tree_leaves(bits)
    # a pruned float model is stored sparsely: bytes saved on disk, values exact
    assert save_compressed(tmp_path / "s.safetensors", sparse) < 0.6 * dense
    restored, _, _ = load_compressed(tmp_path / "s.safetensors")
    np.testing.assert_array_equal(restored["fusion"]["block_0"]["mlp"]["fc1"]["kernel"],
                                  sparse["fusion"]["block_0"]["mlp"]["fc1"]["kernel"])
    half = cast_weights(PARAMS, "bfloat16")
    assert save_compressed(tmp_path / "h.safetensors", half) < 0.6 * dense
    back, _, _ = load_compressed(tmp_path / "h.safetensors")
    assert back["head_mlp"]["fc1"]["kernel"].dtype == jnp.bfloat16
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_compressed(tmp_path / "bad.safetensors")


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.integers(-8, 7), min_size=1, max_size=40))
def test_nibble_packing_round_trips(values):
    codes = np.asarray(values, np.int8)
    np.testing.assert_array_equal(unpack_nibbles(pack_nibbles(codes), codes.shape), codes)


def test_sensitivity_bits_pick_the_narrowest_safe_width():
    target = "fusion/block_0/mlp/fc1/kernel"

    def loss(p):  # only one layer matters, and only its 4-bit error is too large
        from hamnet_jax.transforms.select import path_str

        flat = {path_str(k): v for k, v in jax.tree_util.tree_leaves_with_path(p)}
        return float(jnp.abs(flat[target] - PARAMS["fusion"]["block_0"]["mlp"]["fc1"]["kernel"]).sum())

    bits, report = sensitivity_bits(PARAMS, loss, candidates=(4, 8), tolerance=report_tol())
    assert bits["fusion"]["block_0"]["mlp"]["fc1"]["kernel"] == 8
    assert bits["fusion"]["block_0"]["mlp"]["fc2"]["kernel"] == 4
    assert bits["fusion"]["block_0"]["norm_attn"]["scale"] == 0
    assert report["layers"][target]["delta_4bit"] > report["layers"][target]["delta_8bit"]
    none, _ = sensitivity_bits(PARAMS, loss, candidates=(4,), tolerance=0.0)
    assert none["fusion"]["block_0"]["mlp"]["fc1"]["kernel"] == 0  # no width is safe: stays float


def report_tol() -> float:
    w = PARAMS["fusion"]["block_0"]["mlp"]["fc1"]["kernel"]
    err = {b: float(jnp.abs(dequantize(quantize(w, channel_scale(w, (0,), b), b), channel_scale(w, (0,), b)) - w)
                    .sum()) for b in (4, 8)}
    return (err[4] + err[8]) / 2
