import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamnet_jax.data.batch import random_batch, validate_batch
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, init_params
from hamnet_jax.models import layers
from hamnet_jax.models.layers import Dropout, keep_mask, masked_softmax
from hamnet_jax.platform.random_bits import threefry_2x32, uniform_halfwords
from hamnet_jax.models.uncertainty import predict_with_uncertainty
from hamnet_jax.training.steps import CPU_STEP_OPTIONS


@pytest.fixture(scope="module")
def model_and_params(tiny_model_config):
    model = HAMNet(tiny_model_config)
    batch = random_batch(tiny_model_config, 8)
    return model, init_params(model, batch, jax.random.key(0)), batch


def test_outputs_and_aux_shapes(model_and_params, tiny_model_config):
    model, params, batch = model_and_params
    out, aux = jax.jit(lambda p, b: model.apply({"params": p}, b))(params, batch)
    e = tiny_model_config.embed_dim
    assert out["mean"].shape == (8,) and out["log_var"].shape == (8,)
    assert out["logits"].shape == (8,)  # the tiny config has the classification head
    assert aux["modality_embeddings"].shape == (8, 4, 4, e)
    assert aux["modality_weights"].shape == (8, 4, 4) and aux["visit_weights"].shape == (8, 4)
    assert np.all(np.isfinite(out["mean"])) and np.all(np.isfinite(out["log_var"]))
    # absent modalities and padded visits get no weight
    present = batch.modality_mask * batch.visit_mask[..., None]
    assert np.all(np.asarray(aux["modality_weights"])[present.sum(-1) > 0][present[present.sum(-1) > 0] == 0] == 0)
    assert np.all(np.asarray(aux["visit_weights"])[batch.visit_mask == 0] == 0)


def test_missing_values_do_not_leak(model_and_params):
    """Values behind a 0 feature mask, an absent modality or a padded visit change nothing."""
    model, params, batch = model_and_params
    apply = jax.jit(lambda b: model.apply({"params": params}, b)[0]["mean"])
    base = apply(batch)
    noisy_inputs = {
        m: np.where(batch.feature_masks[m] > 0, batch.inputs[m], 1e3) for m in batch.inputs
    }
    absent = (batch.modality_mask == 0)
    noisy_inputs["imaging"] = np.where(absent[..., 1:2], 77.0, noisy_inputs["imaging"])
    noisy_times = np.where(batch.visit_mask > 0, batch.visit_times, -123.0).astype(np.float32)
    masks = dict(batch.feature_masks)
    masks["imaging"] = np.where(absent[..., 1:2], 1.0, masks["imaging"]).astype(np.float32)
    changed = batch.replace(inputs=noisy_inputs, feature_masks=masks, visit_times=noisy_times)
    np.testing.assert_allclose(apply(changed), base, atol=1e-5)


def test_mc_dropout_uncertainty(model_and_params):
    model, params, batch = model_and_params
    u = jax.jit(lambda p, b, k: predict_with_uncertainty(model, p, b, k, 6))(params, batch, jax.random.key(1))
    for k in ("mean", "aleatoric_std", "epistemic_std", "total_std"):
        assert u[k].shape == (8,) and np.all(np.isfinite(u[k]))
    np.testing.assert_allclose(u["total_std"] ** 2, u["aleatoric_std"] ** 2 + u["epistemic_std"] ** 2, rtol=1e-4)
    assert np.all(u["epistemic_std"] > 0)  # dropout is active


def test_aliases_of_the_original_framework():
    cfg = HAMNetConfig.create(hidden_size=48, num_layers=3, input_size=20, dropout_rate=0.2, num_heads=4)
    assert cfg.embed_dim == 48 and cfg.hidden_size == 48 and cfg.dropout == 0.2 and cfg.dropout_rate == 0.2
    assert cfg.clinical_dim == cfg.imaging_dim == cfg.genetic_dim == cfg.lifestyle_dim == 20


@pytest.mark.parametrize("kwargs, field", [
    (dict(dropout=1.5), "dropout"),
    (dict(dropout_rate=1.5), "dropout"),
    (dict(embed_dim=64, num_heads=5), "num_heads"),
    (dict(num_layers=0), "num_layers"),
    (dict(tier="huge"), "tier"),
    (dict(clinical_dim=-1), "clinical_dim"),
])
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(InputError, match=field):
        HAMNetConfig.create(**kwargs)


def test_heads_not_dividing_width_message():
    with pytest.raises(InputError, match="5 heads do not divide embed_dim=64"):
        HAMNetConfig.from_tier("standard", num_heads=5)


def test_batch_width_mismatch_and_empty_subject(tiny_model_config):
    batch = random_batch(tiny_model_config, 4)
    wrong = batch.replace(inputs={**batch.inputs, "clinical": np.zeros((4, 4, 3), np.float32)})
    with pytest.raises(InputError, match=r"inputs\['clinical'\].*clinical_dim=12"):
        validate_batch(wrong, tiny_model_config)
    empty = batch.replace(modality_mask=np.where(np.arange(4)[:, None, None] == 2, 0.0, batch.modality_mask))
    with pytest.raises(InputError, match="subject row 2 .* no modality"):
        validate_batch(empty, tiny_model_config)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=12), st.integers(0, 2**31 - 1))
def test_masked_softmax_property(mask, seed):
    mask = jnp.asarray(mask, jnp.float32)
    scores = jax.random.normal(jax.random.key(seed), mask.shape) * 10
    w = masked_softmax(scores, mask)
    assert np.isclose(float(w.sum()), 1.0, atol=1e-5)
    if mask.sum() > 0:
        assert float(jnp.abs(w * (1 - mask)).max()) == 0.0


def test_mc_dropout_result_of_a_subject_does_not_depend_on_its_batch(model_and_params):
    model, params, batch = model_and_params
    f = jax.jit(lambda p, b: predict_with_uncertainty(model, p, b, jax.random.key(1), 6))
    whole, part = f(params, batch), f(params, batch.take(np.arange(3, 6)))
    for k in ("mean", "epistemic_std", "total_std"):
        np.testing.assert_allclose(np.asarray(part[k]), np.asarray(whole[k])[3:6], atol=1e-5)


def test_the_wide_path_adds_a_linear_function_of_the_last_visit():
    config = HAMNetConfig.from_tier("base", clinical_dim=6, imaging_dim=0, genetic_dim=0, lifestyle_dim=3,
                                    lifestyle_cardinalities=(2, 3), wide=True, classification=True)
    batch = random_batch(config, 4, 3)
    params = init_params(HAMNet(config), batch, jax.random.key(0))
    assert params["wide"]["kernel"].shape == (2 * 6 + 2 * 3 + 2 + 3, 2)  # features + masks + one-hot codes
    assert not np.asarray(params["wide"]["kernel"]).any()  # zero-initialized: starts as the deep model
    params["wide"]["kernel"] = jnp.ones_like(params["wide"]["kernel"])
    deep = config.replace(wide=False)
    out = jax.jit(HAMNet(config).apply)({"params": params}, batch)[0]
    ref = jax.jit(HAMNet(deep).apply)({"params": {k: v for k, v in params.items() if k != "wide"}}, batch)[0]
    last = np.asarray(batch.visit_mask).sum(1).astype(int) - 1
    codes = np.asarray(batch.categorical)
    x = np.concatenate([np.asarray(a) for a in (batch.inputs["clinical"], batch.feature_masks["clinical"],
                                                batch.inputs["lifestyle"], batch.feature_masks["lifestyle"])]
                       + [np.eye(3)[codes[..., 0]][..., 1:], np.eye(4)[codes[..., 1]][..., 1:]], axis=-1)
    linear = x[np.arange(4), last].sum(-1)
    np.testing.assert_allclose(np.asarray(out["mean"] - ref["mean"]), linear, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["logits"] - ref["logits"]), linear, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
@pytest.mark.parametrize("shape", [(7,), (3, 5, 33), (256, 64)])
def test_keep_masks_are_bernoulli_at_the_rate_and_fixed_by_the_key(shape, impl):
    key = jax.random.key(4, impl=impl)
    mask = np.asarray(keep_mask(key, 0.9, shape))
    assert mask.shape == shape and mask.dtype == bool
    np.testing.assert_array_equal(mask, keep_mask(key, 0.9, shape))  # the same key, the same mask
    other = jax.random.key(5, impl=impl)
    assert not np.array_equal(keep_mask(other, 0.9, (256, 64)), keep_mask(key, 0.9, (256, 64)))
    big = np.asarray(keep_mask(key, 0.7, (400, 1000)))  # 400,000 draws: sd of the mean 0.0007
    assert abs(big.mean() - 0.7) < 0.004
    quarters = [big[:, k::4].mean() for k in range(4)]  # the 16-bit parts of a block (or word) are alike
    assert max(quarters) - min(quarters) < 0.01, quarters
    assert not keep_mask(key, 0.0, (100,)).any() and keep_mask(key, 1.0 - 2**-17, (100,)).all()


def test_unrolled_threefry_is_jaxs_hash():
    """platform/random_bits.threefry_2x32 is Threefry-2x32-20: Random123's known answer, and JAX's
    own bits (partitionable threefry: the XOR of the block's two words at counter (0, i))."""
    zero = jnp.zeros((), jnp.uint32)
    assert [int(w) for w in threefry_2x32(jnp.zeros(2, jnp.uint32), zero, zero)] == [0x6B200159, 0x99BA4EFE]
    key = jax.random.key(7)
    n = 1001
    y0, y1 = jax.jit(lambda k: threefry_2x32(k, jnp.zeros(n, jnp.uint32), jnp.arange(n, dtype=jnp.uint32)))(
        jax.random.key_data(key))
    if jax.config.jax_threefry_partitionable:
        np.testing.assert_array_equal(np.asarray(y0 ^ y1), np.asarray(jax.random.bits(key, (n,), jnp.uint32)))
    halves = np.asarray(uniform_halfwords(key, 9))  # four 16-bit draws per block, y0's then y1's
    np.testing.assert_array_equal(halves[:4], np.stack([np.asarray(y0[:1]), np.asarray(y1[:1])], -1)
                                  .view(np.uint16).reshape(-1))


def test_dropout_scales_what_it_keeps():
    x = jnp.ones((64, 32))
    y = np.asarray(Dropout(0.25).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)}))
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.75], rtol=1e-6)
    np.testing.assert_array_equal(Dropout(0.25).apply({}, x, deterministic=True), x)


def transposes_reading_random_bits(hlo: str) -> list[str]:
    """The compiled HLO's fused computations that transpose and take uint32 operands: copies
    that recompute a dropout mask from its random bits."""
    computations = re.findall(r"\n%([\w.\-]+) \(([^\n]*)\) -> [^\n]*\{\n(.*?)\n\}", hlo, re.S)
    return [name for name, params, body in computations if "u32[" in params and " transpose(" in body]


@pytest.mark.parametrize("divisor", ["opaque", "constant"])
def test_weight_gradients_read_the_stored_dropout_output(monkeypatch, divisor):
    """Dropout divides by an opaque keep probability (`models.layers.opaque_scalar`), so XLA
    stores the masked activation and its cotangent once. With a constant, XLA:CPU recomputes
    them inside the transposed copies in front of the weight gradients, reading the random
    bits with strided loads: the control case, which shows the check can fail."""
    if jax.default_backend() != "cpu":
        pytest.skip("the transposed copies are XLA:CPU's")
    if divisor == "constant":
        monkeypatch.setattr(layers, "opaque_scalar", lambda value, dtype: value)
    block = layers.GatedAttentionBlock(layers.BlockConfig(num_heads=2, dropout=0.1))
    x, mask = jax.random.normal(jax.random.key(0), (64, 8, 32)), jnp.ones((64, 8), bool)
    params = block.init(jax.random.key(1), x, mask, True)
    grad = jax.grad(lambda p, k: (block.apply(p, x, mask, False, rngs={"dropout": k}) ** 2).sum())
    hlo = jax.jit(grad, compiler_options=CPU_STEP_OPTIONS).lower(params, jax.random.key(2)).compile().as_text()
    recomputing = transposes_reading_random_bits(hlo)
    assert (recomputing == []) == (divisor == "opaque"), recomputing


def test_a_subject_level_modality_is_encoded_once_per_subject():
    config = HAMNetConfig.from_tier("base", clinical_dim=5, imaging_dim=0, genetic_dim=40, lifestyle_dim=0,
                                    genetic_group_size=16)
    once = config.replace(subject_level=("genetic",))
    batch = random_batch(config, 6, 3)
    g = np.asarray(batch.inputs["genetic"]).copy()
    m = np.asarray(batch.feature_masks["genetic"]).copy()
    g[:], m[:] = g[:, :1], m[:, :1]  # one genotype per subject, repeated at each visit
    modality_mask = np.asarray(batch.modality_mask).copy()
    modality_mask[..., 2] = 1.0
    repeated = batch.replace(inputs={**batch.inputs, "genetic": g}, feature_masks={**batch.feature_masks, "genetic": m},
                             modality_mask=modality_mask)
    params = init_params(HAMNet(config), batch, jax.random.key(0))
    rows = {}

    def encoder_rows(next_fun, args, kwargs, context):  # the rows each encoder runs on, at trace time
        if context.method_name == "__call__" and context.module.name in ("genetic_encoder", "clinical_encoder"):
            rows[context.module.name] = args[0].shape[0]
        return next_fun(*args, **kwargs)

    def apply(c):
        def f(b):
            with nn.intercept_methods(encoder_rows):
                return HAMNet(c).apply({"params": params}, b)[0]["mean"]
        return jax.jit(f)

    per_visit, subject = apply(config), apply(once)
    expected = per_visit(repeated)
    assert rows == {"genetic_encoder": 18, "clinical_encoder": 18}  # 6 subjects x 3 visit slots
    np.testing.assert_allclose(subject(repeated), expected, rtol=1e-5, atol=1e-5)
    assert rows == {"genetic_encoder": 6, "clinical_encoder": 18}  # genotypes: once per subject
    # measured at the first visit only: the subject-level model still knows it at every visit
    modality_mask[:, 1:, 2] = 0.0
    np.testing.assert_allclose(subject(repeated.replace(modality_mask=modality_mask)), subject(repeated),
                               rtol=1e-5, atol=1e-5)
