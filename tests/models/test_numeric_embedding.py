"""Piecewise-linear embeddings of the clinical values (models/numeric_embedding.py)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
import pytest
from scipy.stats import norm

from hamnet_jax.data.batch import random_batch
from hamnet_jax.errors import InputError
from hamnet_jax.export.onnx_graph import _spec, _trace, arrays_to_batch, batch_fields, batch_to_arrays
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.encoders import DenseEncoder
from hamnet_jax.models.hamnet import HAMNet, init_params
from hamnet_jax.models.numeric_embedding import piecewise_linear, quantile_edges

PLE = dict(clinical_dim=6, imaging_dim=8, genetic_dim=8, lifestyle_dim=3, imaging_group_size=4, genetic_group_size=4,
           lifestyle_cardinalities=(2, 3), clinical_embedding="piecewise_linear",
           embedding_bins=4, feature_embed_dim=3)


def test_edges_are_equal_mass_normal_quantiles():
    edges = quantile_edges(4)
    assert edges.shape == (5,)
    np.testing.assert_allclose(norm.cdf(edges), np.arange(1, 6) / 6, atol=1e-6)


@pytest.mark.parametrize("x", [-5.0, -0.3, 0.0, 0.2, 0.9, 5.0])
def test_each_ramp_is_zero_below_its_bin_one_above_and_linear_inside(x):
    edges = quantile_edges(4)
    encoded = np.asarray(piecewise_linear(jnp.asarray([[x]], jnp.float32), 4))[0, 0]
    assert encoded[0] == pytest.approx(x)  # the value itself: linear extrapolation stays possible
    expected = [min(max((x - lo) / (hi - lo), 0.0), 1.0) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    np.testing.assert_allclose(encoded[1:], expected, atol=1e-6)
    inside = np.flatnonzero((encoded[1:] > 0) & (encoded[1:] < 1))
    assert inside.size <= 1  # a value lies inside one bin at most


def test_a_missing_value_reads_the_same_whatever_it_holds():
    encoder = DenseEncoder(embed_dim=8, embedding_bins=4, feature_embed_dim=3)
    mask = jnp.asarray([[1.0, 0.0, 1.0]])
    params = nn.unbox(encoder.init(jax.random.key(0), jnp.zeros((1, 3)), mask, True))
    assert params["params"]["embedding"]["per_feature"]["kernel"].shape == (3, 5, 3)
    a = encoder.apply(params, jnp.asarray([[0.5, -4.0, 1.0]]), mask, True)
    b = encoder.apply(params, jnp.asarray([[0.5, 7.0, 1.0]]), mask, True)
    np.testing.assert_array_equal(a, b)
    c = encoder.apply(params, jnp.asarray([[0.5, 7.0, 1.5]]), mask, True)
    assert not np.allclose(a, c)  # a measured value does move it


@pytest.mark.parametrize(("field", "value"), [("clinical_embedding", "periodic"), ("embedding_bins", 0),
                                              ("feature_embed_dim", -1)])
def test_embedding_settings_are_checked(field, value):
    with pytest.raises(InputError, match=f"HAMNetConfig.{field}"):
        HAMNetConfig.from_tier("base", **{**PLE, field: value})


def test_embedding_settings_without_the_embedding_are_an_error():
    with pytest.raises(InputError, match="HAMNetConfig.embedding_bins: applies to clinical_embedding"):
        HAMNetConfig.from_tier("base", **{**PLE, "clinical_embedding": "linear"})


def test_a_model_with_embeddings_exports_to_onnx_with_the_same_outputs():
    config = HAMNetConfig.from_tier("base", **PLE)
    batch = random_batch(config, 5, 2)
    params = init_params(HAMNet(config), batch, jax.random.key(1))
    arrays = batch_to_arrays(batch)
    names = [f"in{i}" for i in range(len(arrays))]

    def forward(*xs):
        out, _ = HAMNet(config).apply({"params": params}, arrays_to_batch(dict(zip(_field_names(batch), xs,
                                                                                   strict=True))))
        return out["mean"], out["log_var"]

    graph = _trace(forward, [_spec(a.shape, a.dtype) for a in arrays], names, ["mean", "log_var"], "ple")
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: np.asarray(a) for n, a in zip(names, arrays, strict=True)})
    want = forward(*arrays)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, np.asarray(w), rtol=1e-4, atol=1e-5)


def _field_names(batch) -> list[str]:
    from hamnet_jax.export.onnx_graph import STANDARDIZED_NAMES

    assert len(STANDARDIZED_NAMES) == len(batch_fields(batch))
    return list(STANDARDIZED_NAMES)
