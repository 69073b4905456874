"""Visit packing: the per-visit work on the real visits only gives the unpacked model's
outputs and gradients from the same init program, the row counts cover every batch, and
`fit` trains the same (slow)."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hamnet_jax.config import TrainingConfig
from hamnet_jax.data.batch import random_batch
from hamnet_jax.data.batched import chunks
from hamnet_jax.inference.predictor import mc_packing_rows, predict_batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, boxed_init, init_params
from hamnet_jax.training.loop import fit
from hamnet_jax.data.visit_packing import chunked_packing_rows, packing_rows


def _model():
    """A small model with every modality, genotypes subject-level and both heads."""
    return HAMNetConfig.from_tier("base", embed_dim=16, num_heads=2, clinical_dim=5, imaging_dim=12, genetic_dim=8,
                                  lifestyle_dim=2, lifestyle_cardinalities=(3,), imaging_group_size=4,
                                  genetic_group_size=4, subject_level=("genetic",), classification=True)


def test_packed_model_gives_the_unpacked_outputs_and_gradients():
    config = _model()
    batch = jax.tree_util.tree_map(jnp.asarray, random_batch(config, 12, 4, seed=1))
    real = int(batch.visit_mask.sum())
    assert real < 48  # the batch has padded visits to skip
    params = init_params(HAMNet(config), batch, jax.random.key(0))

    def run(rows: int):
        def loss(p):
            out, aux = HAMNet(config, packed_visits=rows).apply({"params": p}, batch, deterministic=True)
            return (out["mean"] ** 2 + out["log_var"] + out["logits"]).sum(), (out, aux)
        return jax.jit(jax.grad(loss, has_aux=True))(params)

    grads, (out, aux) = run(0)
    for rows in (real + 5,):  # real visits, then rows that read as zeros
        packed_grads, (packed_out, packed_aux) = run(rows)
        for a, b in zip(jax.tree_util.tree_leaves((out, grads)), jax.tree_util.tree_leaves((packed_out, packed_grads)),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        real_visits = batch.visit_mask[..., None]
        np.testing.assert_allclose(packed_aux["visit_embeddings"] * real_visits,
                                   aux["visit_embeddings"] * real_visits, rtol=1e-4, atol=1e-5)
        assert not np.any(packed_aux["visit_embeddings"] * (1 - real_visits))  # padded visits: zeros
    # the parameters come from one init program whatever the packing (compiled once, cached)
    lowered = [jax.jit(lambda k, m=m: nn.unbox(boxed_init(m, batch, k))).lower(jax.random.key(0)).as_text()
               for m in (HAMNet(config), HAMNet(config, packed_visits=real + 5))]
    assert lowered[0] == lowered[1]


def test_packing_rows_cover_the_largest_batch_and_save_something():
    assert packing_rows([10, 17, 3], slots=64) == 24  # rounded up to a multiple of 8
    assert packing_rows([57], slots=64) == 0  # 64 rows would save nothing
    assert packing_rows([], slots=64) == 0
    counts = np.random.default_rng(0).integers(1, 5, size=150)
    visit_mask = (np.arange(4)[None] < counts[:, None]).astype(np.float32)
    batch = random_batch(_model(), 150, 4).replace(visit_mask=visit_mask)
    most = max(int(np.asarray(chunk.visit_mask).sum()) for chunk, _ in chunks(batch, 64))
    rows = chunked_packing_rows(counts, 64, 4)
    assert most <= rows < most + 8 and rows < 64 * 4


@pytest.mark.slow  # two fits (~47 s in the suite); the model-level equality above runs in every suite
def test_fit_with_packing_trains_like_fit_without():
    """Without dropout (whose masks follow the packed shape) packing changes only the order
    of float sums: the same epochs, the same losses to float tolerance."""
    config = _model().replace(dropout=0.0)
    train = random_batch(config, 96, 4, seed=2)
    val = random_batch(config, 40, 4, seed=3)
    cfg = TrainingConfig(num_epochs=2, batch_size=32, early_stop_patience=0, eval_batch_size=64)
    packed = fit(config, cfg, train, val)
    plain = fit(config, dataclasses.replace(cfg, visit_packing=False), train, val)
    for a, b in zip(packed.history, plain.history, strict=True):
        for key in ("train_loss", "val_loss", "val_mae"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    # (parameters whose gradient is ~0 move by Adam's normalized float noise, so compare what they compute)
    outputs = [HAMNet(config).apply({"params": r.params}, val)[0] for r in (packed, plain)]
    for key in ("mean", "log_var"):
        np.testing.assert_allclose(outputs[0][key], outputs[1][key], rtol=1e-3, atol=1e-4)


def test_mc_predictions_packed_equal_the_unpacked_ones_under_the_same_masks():
    """Each packed row gets its (sample, visit slot)'s recorded mask, so packing changes
    nothing but the order of float sums."""
    config = _model()
    batch = random_batch(config, 20, 4, seed=4)
    params = jax.device_get(init_params(HAMNet(config), jax.tree_util.tree_map(jnp.asarray, batch),
                                        jax.random.key(0)))
    packed = predict_batch(config, params, batch, 50.0, 10.0, num_samples=5, seed=2, visit_slots=4)
    plain = predict_batch(config, params, batch, 50.0, 10.0, num_samples=5, seed=2, visit_slots=4,
                          visit_packing=False)
    assert plain["epistemic_std"].min() > 0  # dropout is active: the masks matter
    for key in ("prediction", "epistemic_std", "total_std", "outcome_probability", "outcome_probability_std"):
        np.testing.assert_allclose(packed[key], plain[key], rtol=1e-4, atol=1e-5, err_msg=key)
    shared = mc_packing_rows([batch, batch.take(np.arange(8))], 5)  # one program for several batches
    np.testing.assert_allclose(predict_batch(config, params, batch, 50.0, 10.0, num_samples=5, seed=2, visit_slots=4,
                                             packed_rows=shared)["prediction"], plain["prediction"], rtol=1e-4)
    with pytest.raises(ValueError, match="cannot hold this batch's real visits"):
        predict_batch(config, params, batch, 50.0, 10.0, num_samples=5, visit_slots=4, packed_rows=8)
    with pytest.raises(ValueError, match="packed_rows applies to the plain model"):
        predict_batch(config, params, batch, 50.0, 10.0, num_samples=5, visit_slots=4, visit_packing=False,
                      packed_rows=shared)
