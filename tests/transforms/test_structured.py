"""Structured pruning: compaction computes the same function as the masked model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamnet_jax.data.batch import random_batch
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, init_params
from hamnet_jax.transforms import structured
from hamnet_jax.transforms.masks import apply_masks

CONFIG = HAMNetConfig.from_tier("base", clinical_dim=10, imaging_dim=20, genetic_dim=30, lifestyle_dim=4,
                                imaging_group_size=8, genetic_group_size=16, lifestyle_cardinalities=(3,),
                                classification=True)
BATCH = random_batch(CONFIG, 8, 3)
PARAMS = init_params(HAMNet(CONFIG), BATCH, jax.random.key(0))


def outputs(config, params):
    return HAMNet(config).apply({"params": params}, BATCH)[0]


@settings(max_examples=4, deadline=None)  # each example compacts to a new shape: ~8 s of compiles
@given(sparsity=st.sampled_from([0.25, 0.5, 0.75]), seed=st.integers(0, 1000),
       kinds=st.sampled_from([("neurons",), ("heads",), ("channels",), ("neurons", "heads", "channels")]))
def test_compaction_equals_masked_model(sparsity, seed, kinds):
    groups = structured.unit_groups(PARAMS, kinds)
    rng = np.random.default_rng(seed)
    scores = {g.layer: rng.random(g.num_units) for g in groups}  # any choice of units must compact exactly
    keep = structured.select_units(groups, scores, sparsity)
    masked = apply_masks(PARAMS, structured.structured_masks(groups, keep, PARAMS))
    small_config, small = structured.compact(CONFIG, PARAMS, groups, keep)
    a, b = outputs(CONFIG, masked), outputs(small_config, small)
    for k in a:
        assert float(jnp.abs(a[k] - b[k]).max()) <= 1e-5
    removed = sum(int((~v).sum()) for v in keep.values())
    n_small = sum(x.size for x in jax.tree_util.tree_leaves(small))
    assert (n_small < sum(x.size for x in jax.tree_util.tree_leaves(PARAMS))) == (removed > 0)


def test_compaction_composes_and_counts_units():
    groups = structured.unit_groups(PARAMS)
    assert {g.kind for g in groups} == {"neurons", "heads", "channels"}
    keep = structured.select_units(groups, structured.unit_scores(groups, PARAMS), 0.5)
    config2, params2 = structured.compact(CONFIG, PARAMS, groups, keep)
    assert config2.num_heads == 1 and config2.head_dim == CONFIG.embed_dim // CONFIG.num_heads
    assert config2.mlp_dim == CONFIG.embed_dim * CONFIG.mlp_ratio // 2
    assert len(config2.imaging_kept_features) == 3 * 4  # 3 groups of 8, half kept
    # a second round on the compacted model keeps positions in the original feature layout
    groups2 = structured.unit_groups(params2, ("channels",))
    keep2 = structured.select_units(groups2, structured.unit_scores(groups2, params2), 0.5)
    config3, params3 = structured.compact(config2, params2, groups2, keep2)
    assert set(config3.imaging_kept_features) < set(config2.imaging_kept_features)
    masked = apply_masks(params2, structured.structured_masks(groups2, keep2, params2))
    a, b = outputs(config2, masked), outputs(config3, params3)
    assert float(jnp.abs(a["mean"] - b["mean"]).max()) <= 1e-5
    # the compacted config survives a round trip through its dict (config.yaml)
    assert HAMNetConfig.create(**config3.to_dict()) == config3


def test_every_layer_keeps_a_unit_and_uneven_counts_are_refused():
    groups = structured.unit_groups(PARAMS, ("heads",))
    keep = structured.select_units(groups, structured.unit_scores(groups, PARAMS), 0.99)
    assert all(v.sum() == 1 for v in keep.values())
    keep[groups[0].layer] = np.ones(groups[0].num_units, bool)
    with pytest.raises(ValueError, match="same kept count"):
        structured.compact(CONFIG, PARAMS, groups, keep)
    with pytest.raises(ValueError, match="structure kind"):
        structured.unit_groups(PARAMS, ("filters",))


def test_kept_features_are_validated_by_name():
    with pytest.raises(InputError, match="imaging_kept_features.*same number"):
        CONFIG.replace(imaging_kept_features=(0, 1, 9))
    with pytest.raises(InputError, match="genetic_kept_features.*sorted"):
        CONFIG.replace(genetic_kept_features=(3, 1))
    with pytest.raises(InputError, match="mlp_dim"):
        CONFIG.replace(mlp_dim=-1)


def test_taylor_unit_scores_accumulate_squared_unit_terms():
    groups = structured.unit_groups(PARAMS, ("heads",))
    grads = jax.tree_util.tree_map(jnp.ones_like, PARAMS)
    once = structured.accumulate_unit_taylor(groups, None, PARAMS, grads)
    twice = structured.accumulate_unit_taylor(groups, once, PARAMS, grads)
    scores = structured.unit_scores(groups, PARAMS, "taylor", twice)
    layer = groups[0].layer
    np.testing.assert_allclose(scores[layer], 2 * np.asarray(once[layer]), rtol=1e-6)
    assert scores[layer].shape == (groups[0].num_units,)
    with pytest.raises(ValueError, match="taylor_scores"):
        structured.unit_scores(groups, PARAMS, "taylor")
