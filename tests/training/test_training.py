import json

import jax
import numpy as np
import pytest

from hamnet_jax.data.batch import random_batch
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.transforms.losses import gaussian_nll, regression_loss
from hamnet_jax.evaluation.metrics import auroc, regression_metrics
from hamnet_jax.training.state import OptimizerConfig, create_train_state
from hamnet_jax.training.steps import eval_step, train_step
from hamnet_jax.transforms.select import path_str, select_by_path, weight_decay_mask


def test_weight_decay_skips_biases_and_norms(tiny_model_config):
    model = HAMNet(tiny_model_config)
    state = create_train_state(model, random_batch(tiny_model_config, 2), jax.random.key(0), OptimizerConfig())
    flat = jax.tree_util.tree_flatten_with_path(weight_decay_mask(state.params))[0]
    decisions = {path_str(p): v for p, v in flat}
    assert all(not v for k, v in decisions.items() if k.endswith("/bias") or k.endswith("/scale"))
    assert decisions["clinical_encoder/fc1/kernel"] is True
    assert any(not v for v in decisions.values()) and any(decisions.values())


def test_selector_requires_full_coverage():
    with pytest.raises(ValueError, match="a/b.*no rule"):
        select_by_path({"a": {"b": 1, "c": 2}}, [(r"/c$", True)])


def test_train_step_learns_a_fixed_batch(tiny_model_config):
    model = HAMNet(tiny_model_config)
    batch = random_batch(tiny_model_config, 32, seed=5)
    state = create_train_state(model, batch, jax.random.key(0),
                               OptimizerConfig(learning_rate=3e-3, warmup_steps=1, total_steps=60))
    first = None
    for step in range(60):
        state, metrics = train_step(state, batch, jax.random.key(step))
        first = first if first is not None else float(metrics["loss"])
        assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["grad_norm"]))
    out = eval_step(model.apply, state.params, batch)
    final = float(gaussian_nll(out["mean"], out["log_var"], batch.targets).mean())
    assert final < first - 0.3


def test_beta_nll_weights_the_mean_gradient_by_the_variance():
    import jax.numpy as jnp

    from hamnet_jax.transforms.losses import beta_nll, gaussian_nll

    mean, y = jnp.array([0.0, 0.0]), jnp.array([1.0, 1.0])
    log_var = jnp.log(jnp.array([0.25, 4.0]))
    # NLL: d/dmu = (mu - y) / var; beta-NLL multiplies it by var^beta (here 0.5): (mu - y) / sqrt(var)
    g_nll = jax.grad(lambda m: gaussian_nll(m, log_var, y).sum())(mean)
    g_beta = jax.grad(lambda m: beta_nll(m, log_var, y).sum())(mean)
    np.testing.assert_allclose(g_nll, [-4.0, -0.25], rtol=1e-6)
    np.testing.assert_allclose(g_beta, [-2.0, -0.5], rtol=1e-6)
    np.testing.assert_allclose(beta_nll(mean, log_var, y, beta=0.0), gaussian_nll(mean, log_var, y))


def test_selection_metric_picks_the_epoch_and_drives_early_stopping():
    from hamnet_jax.training.loop import _bookkeeping, _fresh_meta

    records = [{"epoch": 1, "val_loss": 1.0, "val_mae": 0.9}, {"epoch": 2, "val_loss": 0.8, "val_mae": 0.95},
               {"epoch": 3, "val_loss": 0.9, "val_mae": 0.7}]
    for metric, best, bad in (("val_loss", 2, 1), ("val_mae", 3, 0)):
        meta = _fresh_meta()
        for r in records:
            meta, _ = _bookkeeping(meta, r, True, metric)
        assert (meta["best_epoch"], meta["bad_epochs"]) == (best, bad)
        assert meta["best_val_loss"] == records[best - 1][metric]


def test_the_default_selection_is_the_mae_with_a_regression_head_and_the_log_loss_without():
    from hamnet_jax.config import config_from_dict

    auto = config_from_dict({}).training
    assert (auto.selection_metric, auto.selection_for(True), auto.selection_for(False)) == ("auto", "val_mae",
                                                                                          "val_loss")
    given = config_from_dict({"training": {"selection_metric": "val_loss"}}).training
    assert given.selection_for(True) == given.selection_for(False) == "val_loss"


@pytest.mark.parametrize("kind", ["gaussian_nll", "beta_nll", "mse", "huber"])
def test_regression_losses_train_the_variance_head(kind):
    import jax.numpy as jnp

    y = jnp.array([0.0, 1.0, 2.0])
    grads = jax.grad(lambda lv: regression_loss({"mean": jnp.zeros(3), "log_var": lv}, y, kind).sum())(jnp.zeros(3))
    assert float(jnp.abs(grads).sum()) > 0


def test_metrics_match_reference_formulas():
    from sklearn.metrics import r2_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    pred = y + rng.normal(scale=0.5, size=500)
    m = regression_metrics(y, pred, np.full(500, 0.5))
    assert m["r2"] == pytest.approx(r2_score(y, pred))
    assert 0.85 < m["coverage_90"] < 0.95
    # by hand: errors 0.5, 0, -1 -> MAE 0.5, RMSE sqrt(1.25 / 3), R^2 1 - 1.25 / 2; |e| <= 1.645 x 0.5 for 2 of 3
    small = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 2.0]), np.full(3, 0.5))
    assert small["mae"] == pytest.approx(0.5) and small["rmse"] == pytest.approx(0.6454972)
    assert small["r2"] == pytest.approx(0.375) and small["coverage_90"] == pytest.approx(2 / 3)
    labels = rng.random(500) < 0.3
    scores = labels + rng.normal(size=500)
    scores[:50] = np.round(scores[:50])  # ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_run_directory_is_complete(tiny_run):
    for name in ("config.yaml", "schema.yaml", "preprocessor.npz", "calibration.json", "summary.json",
                 "plots/learning_curve.png", "plots/pred_vs_true.png", "checkpoints/latest", "checkpoints/best",
                 "params"):
        assert (tiny_run / name).exists(), name
    history = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    assert list((tiny_run / "tb").glob("events.out.tfevents.*"))
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert np.isfinite(summary["test"]["mae"]) and 0 <= summary["test"]["coverage_90"] <= 1
    assert summary["best_epoch"] in (1, 2)
    assert 0 <= summary["test"]["auroc"] <= 1 and 0 <= summary["test"]["accuracy"] <= 1  # mortality head


def test_on_epoch_gets_timing_the_run_log_does_not_keep(tiny_run):
    """An exporter's callback sees each epoch's seconds and samples; metrics.jsonl stays
    deterministic (no wall-clock figures in it)."""
    from tests.conftest import TINY_RUN_EPOCHS

    history = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert [r["epoch"] for r in TINY_RUN_EPOCHS] == [h["epoch"] for h in history] == [1, 2]
    assert all(r["seconds"] > 0 and r["samples"] == summary["subjects"]["train"] for r in TINY_RUN_EPOCHS)
    assert all({k: r[k] for k in h} == h for r, h in zip(TINY_RUN_EPOCHS, history, strict=True))
    assert not any("seconds" in h or "samples" in h for h in history)


def test_job_metrics_serve_training_and_search_figures(capsys):
    import urllib.request

    from hamnet_jax.cli.setup import job_metrics
    from hamnet_jax.errors import InputError

    with pytest.raises(InputError, match="--metrics-port 70000: expected a port"):
        job_metrics(70000)
    assert job_metrics(None) is None
    metrics = job_metrics(0)
    try:
        url = capsys.readouterr().err.split("metrics on ")[1].split()[0]
        metrics.record_epoch(1, 0.9, 0.8, seconds=2.0, samples=1000)
        metrics.record_trial("done", {"val_mae": 0.5})
        metrics.record_trial("done", {"val_mae": 0.7})
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        metrics.close()
    assert "hamnet_train_samples_per_second 500.0" in text and 'hamnet_train_loss{split="val"} 0.8' in text
    assert 'hamnet_search_trials_total{status="done"} 2.0' in text
    assert 'hamnet_search_best{objective="val_mae"} 0.5' in text
