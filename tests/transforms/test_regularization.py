"""Regularization: a battery over every data transform and loss term under jit (finite,
shapes and dtypes kept, masks respected), the dropout variants, penalties, spectral norm,
adversarial perturbations, and one regularized step with everything on."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hamnet_jax.data.batch import random_batch
from hamnet_jax.models.config import MODALITIES, HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, init_params
from hamnet_jax.optimization.regularization import HAMNetRegularizer, RegularizationConfig, RegularizationType
from hamnet_jax.config import TrainingConfig
from hamnet_jax.transforms.losses import gaussian_nll
from hamnet_jax.training.regularized_step import regularized_step
from hamnet_jax.training.state import TrainState
from hamnet_jax.transforms import regularization as reg
from hamnet_jax.transforms.penalties import as_matrix
from hamnet_jax.transforms.select import leaves_by_path

CFG = HAMNetConfig.from_tier("base", clinical_dim=12, imaging_dim=48, genetic_dim=40, lifestyle_dim=6,
                             imaging_group_size=16, genetic_group_size=16, classification=True,
                             lifestyle_cardinalities=(3, 4), dropout=0.1)
R = RegularizationType
BATCH = random_batch(CFG, 16, seed=1)


@pytest.fixture(scope="module")
def params():
    return init_params(HAMNet(CFG.replace(information_bottleneck=True)), BATCH, jax.random.key(0))


def fields(batch):
    return {"inputs": batch.inputs, "feature_masks": batch.feature_masks, "categorical": batch.categorical,
            "modality_mask": batch.modality_mask, "visit_mask": batch.visit_mask, "visit_times": batch.visit_times,
            "targets": batch.targets, "labels": batch.labels}


TRANSFORMS = {
    "mixup": functools.partial(reg.mixup, alpha=0.4),
    "cutmix": functools.partial(reg.cutmix, alpha=1.0),
    "modality_dropout": functools.partial(reg.modality_dropout, rate=0.5),
    "rand_augment": functools.partial(reg.rand_augment, num_ops=2, magnitude=8.0),
}


@pytest.mark.parametrize("name", TRANSFORMS)
def test_data_transforms_jit_keep_shapes_and_respect_masks(name):
    out = jax.device_get(jax.jit(TRANSFORMS[name])(BATCH, jax.random.key(7)))
    for (path, a), b in zip(leaves_by_path(fields(BATCH)).items(), jax.tree_util.tree_leaves(fields(out)),
                            strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, path
        assert np.isfinite(b).all(), path
    for m in MODALITIES:
        x, mask = out.inputs[m], out.feature_masks[m]
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert (x[mask == 0] == 0).all(), f"{name}: a missing {m} feature carries a value"
        if name in ("modality_dropout", "rand_augment"):  # masks only ever shrink
            assert (mask <= BATCH.feature_masks[m]).all()
    present = (out.modality_mask * out.visit_mask[..., None]).max(axis=1).sum(axis=1)
    assert (present >= 1).all(), "every subject keeps a modality"


def test_mixup_keeps_values_observed_on_one_side_only():
    key = jax.random.key(3)
    out = reg.mixup(BATCH, key, alpha=0.4)
    j = np.asarray(jax.random.permutation(jax.random.split(key)[0], BATCH.size))
    x, m = np.asarray(BATCH.inputs["clinical"]), np.asarray(BATCH.feature_masks["clinical"])
    only_own = (m == 1) & (m[j] == 0)
    np.testing.assert_allclose(np.asarray(out.inputs["clinical"])[only_own], x[only_own], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(out.feature_masks["clinical"]), np.maximum(m, m[j]))


def test_cutmix_takes_a_contiguous_block_with_its_mask():
    out = reg.cutmix(BATCH, jax.random.key(5), alpha=1.0)
    changed = 0
    for m in MODALITIES:
        diff = (np.asarray(out.feature_masks[m]) != np.asarray(BATCH.feature_masks[m])) | (
            np.asarray(out.inputs[m]) != np.asarray(BATCH.inputs[m]))
        for b in range(BATCH.size):
            cols = np.flatnonzero(diff[b].any(axis=0))
            if cols.size:
                changed += 1
                assert cols[-1] - cols[0] + 1 >= cols.size  # inside one block
    assert changed > 0
    assert not np.allclose(out.targets, BATCH.targets)


def test_modality_dropout_removes_whole_modalities():
    dropped = np.zeros((BATCH.size, 4), bool)
    dropped[:, MODALITIES.index("imaging")] = True
    out = reg.drop_modalities(BATCH, jnp.asarray(dropped))
    assert float(jnp.abs(out.inputs["imaging"]).sum()) == 0 and float(out.feature_masks["imaging"].sum()) == 0
    assert float(out.modality_mask[..., 1].sum()) == 0
    np.testing.assert_array_equal(out.inputs["clinical"], BATCH.inputs["clinical"])


@pytest.mark.parametrize("kind", ["standard", "gaussian", "alpha"])
def test_dropout_variants_keep_shape_dtype_and_moments(kind):
    x = jax.random.normal(jax.random.key(0), (200_000,), jnp.float32)
    y = jax.jit(lambda x, k: reg.dropout(x, 0.2, k, kind))(x, jax.random.key(1))
    assert y.shape == x.shape and y.dtype == x.dtype and bool(jnp.isfinite(y).all())
    assert float(y.mean()) == pytest.approx(float(x.mean()), abs=0.01)
    if kind == "alpha":  # self-normalizing: unit variance kept for standardized inputs
        assert float(y.var()) == pytest.approx(1.0, abs=0.02)
    assert not np.allclose(y, x)
    np.testing.assert_array_equal(reg.dropout(x, 0.0, jax.random.key(1), kind), x)


def test_drop_connect_touches_only_selected_weights(params):
    dropped = jax.jit(lambda p, k: reg.drop_connect(p, k, 0.5, reg.weight_decay_mask(p)))(params, jax.random.key(0))
    for (path, a), b in zip(leaves_by_path(params).items(), jax.tree_util.tree_leaves(dropped), strict=True):
        if path.endswith("bias") or path.endswith("scale"):
            np.testing.assert_array_equal(a, b)
    kernel = leaves_by_path(dropped)["head_mlp/fc1/kernel"]
    assert 0.3 < float((kernel == 0).mean()) < 0.7


def test_stochastic_depth_and_dropout_kind_only_act_in_training(params):
    model = HAMNetRegularizer(RegularizationConfig(
        enabled_techniques=(R.ALPHA_DROPOUT, R.STOCHASTIC_DEPTH, R.INFORMATION_BOTTLENECK),
        stochastic_depth_rate=0.5)).prepare_model(HAMNet(CFG))
    plain = HAMNet(model.config)
    run = jax.jit(lambda p, det, k: model.apply({"params": p}, BATCH, deterministic=det,
                                                rngs={"dropout": k})[0]["mean"], static_argnums=1)
    ref = jax.jit(lambda p, k: plain.apply({"params": p}, BATCH, deterministic=False, rngs={"dropout": k})[0]["mean"])
    np.testing.assert_allclose(run(params, True, jax.random.key(0)),
                               plain.apply({"params": params}, BATCH, deterministic=True)[0]["mean"], atol=1e-5)
    assert not np.allclose(run(params, False, jax.random.key(0)), ref(params, jax.random.key(0)))


def test_penalties_by_path():
    tree = {"dense": {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([5.0])}}
    sel = reg.weight_decay_mask(tree)
    assert float(reg.l1_penalty(tree, sel)) == 3.0 and float(reg.l2_penalty(tree, sel)) == 5.0
    assert float(reg.elastic_net_penalty(tree, sel, 0.25)) == pytest.approx(0.25 * 3 + 0.75 * 5)


def test_power_iteration_and_spectral_norm_projection():
    w = jax.random.normal(jax.random.key(0), (24, 16)) * 3.0
    sigma, _ = reg.power_iteration(w, jnp.ones(16) / 4.0, 50)
    assert float(sigma) == pytest.approx(float(jnp.linalg.svd(w, compute_uv=False)[0]), rel=1e-4)
    tree = {"mlp": {"fc1": {"kernel": w}}, "other": {"kernel": w}}
    tx = optax.chain(optax.sgd(0.0), reg.spectral_norm_optax(((r"^mlp/", True), (r".*", False)), max_norm=1.0))
    state, p = tx.init(tree), tree
    for _ in range(15):  # one power iteration per step: sigma converges while the norm is held
        updates, state = tx.update(jax.tree_util.tree_map(jnp.zeros_like, p), state, p)
        p = optax.apply_updates(p, updates)
    # power iteration estimates sigma from below, so the bound holds to the estimate's error
    assert float(jnp.linalg.svd(p["mlp"]["fc1"]["kernel"], compute_uv=False)[0]) <= 1.0 + 1e-2
    np.testing.assert_array_equal(p["other"]["kernel"], w)
    assert as_matrix("attn/out/kernel", jnp.zeros((2, 3, 5))).shape == (6, 5)


def _loss_of_batch(params):
    def loss(b):
        out, _ = HAMNet(CFG).apply({"params": params}, b, deterministic=True)
        return gaussian_nll(out["mean"], out["log_var"], b.targets).mean()
    return loss


def test_fgsm_and_pgd_move_observed_inputs_within_epsilon_and_raise_the_loss(params):
    p = {k: v for k, v in params.items() if k != "bottleneck"}
    loss = _loss_of_batch(p)
    eps = 0.1
    fg = jax.jit(lambda b: reg.fgsm(loss, b, eps))(BATCH)
    pg = jax.jit(lambda b: reg.pgd(loss, b, eps, jax.random.key(0), steps=3))(BATCH)
    for m in MODALITIES:
        d_fg = np.abs(np.asarray(fg.inputs[m]) - np.asarray(BATCH.inputs[m]))
        mask = np.asarray(BATCH.feature_masks[m])
        assert (d_fg[mask == 0] == 0).all() and d_fg.max() <= eps + 1e-6
        d_pg = np.abs(np.asarray(pg.inputs[m]) - np.asarray(BATCH.inputs[m]))
        assert (d_pg[mask == 0] == 0).all() and d_pg.max() <= eps + 1e-6
    clean = float(loss(BATCH))
    assert float(loss(fg)) > clean and float(loss(pg)) > clean


TERM_TECHNIQUES = (R.L1, R.L2, R.ELASTIC_NET, R.ADVERSARIAL, R.PGD, R.VAT, R.MANIFOLD, R.INFORMATION_BOTTLENECK,
                   R.CONSISTENCY)


@pytest.mark.parametrize("technique", TERM_TECHNIQUES)
def test_every_loss_term_jits_finite_and_non_negative(params, technique):
    regularizer = HAMNetRegularizer(RegularizationConfig(enabled_techniques=(technique,)))
    model = regularizer.prepare_model(HAMNet(CFG))

    @jax.jit
    def term(p, key):
        outputs, aux = model.apply({"params": p}, BATCH, deterministic=False, rngs={"dropout": key})
        return regularizer.apply_regularization(model, p, BATCH, outputs, aux, key)

    value = term(params, jax.random.key(0))
    assert value.shape == () and np.isfinite(float(value)) and float(value) > 0


def test_vat_is_zero_at_zero_radius_and_vib_kl_at_the_prior():
    predict = lambda b: {"mean": b.inputs["clinical"].sum((1, 2)), "log_var": jnp.zeros(b.size)}
    clean = predict(BATCH)
    assert float(reg.vat_loss(predict, BATCH, clean, jax.random.key(0), epsilon=0.0)) == pytest.approx(0.0, abs=1e-9)
    assert float(reg.vat_loss(predict, BATCH, clean, jax.random.key(0), epsilon=1.0)) > 0
    aux = {"bottleneck_mean": jnp.zeros((4, 8)), "bottleneck_log_var": jnp.zeros((4, 8))}
    assert float(reg.information_bottleneck_kl(aux)) == 0.0


def test_manifold_penalty_prefers_embeddings_that_follow_the_input_graph():
    affinity = reg.input_affinity(BATCH)
    np.testing.assert_allclose(affinity, affinity.T, rtol=1e-5)
    assert float(jnp.abs(jnp.diag(affinity)).max()) == 0.0
    follows = jnp.concatenate([BATCH.inputs[m].reshape(BATCH.size, -1) for m in MODALITIES], -1)
    shuffled = follows[::-1]
    assert float(reg.manifold_smoothness(follows, affinity)) < float(reg.manifold_smoothness(shuffled, affinity))


@pytest.mark.slow
def test_one_regularized_step_with_every_technique(params):
    # every technique composed in one step (slow: one 30,000-line HLO, ~75 s to compile at
    # -O0); each technique alone is in the battery above, and `dropout` + `l2` composed run in
    # the default suite through `hamnet train`. PGD and VAT (nested input gradients) are
    # covered by the term battery only
    everything = tuple(t for t in R if t not in (R.GAUSSIAN_DROPOUT, R.ALPHA_DROPOUT, R.PGD, R.VAT))
    regularizer = HAMNetRegularizer(RegularizationConfig(enabled_techniques=everything))
    model = regularizer.prepare_model(HAMNet(CFG))
    assert model.config.information_bottleneck and model.config.dropout == 0.1
    state = TrainState.create(apply_fn=model.apply, params=jax.tree_util.tree_map(np.array, params),
                              tx=regularizer.wrap_optimizer(optax.adamw(1e-3, weight_decay=regularizer.weight_decay)))
    new, metrics = regularized_step(state, BATCH, jax.random.key(0), regularizer.config)
    assert {f"reg_{t}" for t in ("l1", "l2", "elastic_net", "adversarial", "manifold",
                                 "information_bottleneck", "consistency")} <= set(metrics)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    kernel = new.params["head_mlp"]["fc1"]["kernel"]
    assert float(jnp.linalg.svd(kernel, compute_uv=False)[0]) <= 1.0 + 0.5  # one power step: near the bound


def test_fit_runs_and_config_errors_name_the_field():
    train, val = random_batch(CFG, 64, seed=2), random_batch(CFG, 32, seed=3)
    regularizer = HAMNetRegularizer(RegularizationConfig(enabled_techniques=("modality_dropout", "mixup")))
    _, result = regularizer.fit(CFG, train, val, TrainingConfig(num_epochs=1, batch_size=32))
    assert np.isfinite(result.history[0]["val_loss"])
    with pytest.raises(ValueError, match="enabled_techniques.*'sparkle'"):
        RegularizationConfig(enabled_techniques=("sparkle",))
    with pytest.raises(ValueError, match="one dropout kind"):
        RegularizationConfig(enabled_techniques=(R.DROPOUT, R.ALPHA_DROPOUT))
    with pytest.raises(ValueError, match="RegularizationConfig.modality_dropout_rate"):
        RegularizationConfig(modality_dropout_rate=1.0)


@pytest.mark.slow  # `hamnet train` with a regularization section, ~50 s cold; fit with techniques stays
def test_regularization_section_drives_training(tiny_cohort, tmp_path, capsys):
    """With a `regularization:` section, `hamnet train` runs the regularized objective: the
    per-epoch metrics carry the enabled techniques' terms, and nothing is reported unused."""
    import json

    import yaml

    from hamnet_jax.cli import main
    from ..conftest import TINY_CONFIG

    data, _ = tiny_cohort
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({**TINY_CONFIG, "training": {**TINY_CONFIG["training"], "num_epochs": 1},
                                      "regularization": {"enabled_techniques": ["dropout", "l2"],
                                                         "dropout_rate": 0.2}}))
    assert main(["train", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "r"),
                 "--quiet"]) == 0
    assert "not used" not in capsys.readouterr().err
    record = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["train_reg_l2"] > 0 and "train_task_loss" in record
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["model"]["dropout"] == 0.2
