"""Outcome-only tasks: a schema with an `outcome` and no `target` trains the classification
head alone; evaluate, predict, export and cross-validation report outcome metrics."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import yaml

from hamnet_jax.cli import main
from hamnet_jax.data.batch import random_batch
from hamnet_jax.data.dataset import load_cohort
from hamnet_jax.data.tables import write_table
from hamnet_jax.errors import InputError
from hamnet_jax.evaluation.metrics import classification_metrics
from hamnet_jax.inference.calibration import UNCALIBRATED, tempered_probability
from hamnet_jax.inference.raw_inputs import cohort_to_raw
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, init_params
from hamnet_jax.runs.run_dir import load_run
from hamnet_jax.transforms.losses import task_loss

from ..conftest import TINY_CONFIG


def test_an_outcome_only_model_has_the_classification_head_alone():
    config = HAMNetConfig.from_tier("base", clinical_dim=6, imaging_dim=0, genetic_dim=0, lifestyle_dim=3,
                                    regression=False, classification=True)
    batch = random_batch(config, 4, 2)
    params = jax.eval_shape(lambda k: init_params(HAMNet(config), batch, k), jax.random.key(0))
    assert "mean_head" not in params and "log_var_head" not in params and "class_head" in params
    outputs, _ = jax.jit(HAMNet(config).init_with_output)({"params": jax.random.key(0)}, batch)[0]
    assert set(outputs) == {"logits"}
    loss = task_loss(outputs, batch.targets, batch.labels, "gaussian_nll", 5.0)
    expected = np.log1p(np.exp(-np.where(batch.labels > 0.5, 1, -1) * np.asarray(outputs["logits"])))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)  # BCE alone, not weighted
    with pytest.raises(InputError, match="regression.*a regression head, a classification head or both"):
        config.replace(classification=False)


def test_classification_metrics_against_their_definitions():
    y = np.array([0, 0, 1, 1, np.nan])
    p = np.array([0.1, 0.6, 0.4, 0.9, 0.5])
    m = classification_metrics(y, p)
    assert m["auroc"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["brier"] == pytest.approx(np.mean([0.01, 0.36, 0.36, 0.01]))
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.4, 0.9])))


@pytest.fixture(scope="module")
def outcome_data(tmp_path_factory):
    """The tiny cohort's clinical and lifestyle columns with the outcome and no target; the
    model has the wide (linear) path too, started at its logistic fit, so both are tested here
    through train and export."""
    from hamnet_jax.cohort.default import generate_cohort
    from ..conftest import TINY_DIMS

    frame, schema = generate_cohort(240, seed=3, dims=TINY_DIMS)
    root = tmp_path_factory.mktemp("outcome")
    schema = {k: v for k, v in schema.items() if k != "target"}
    schema["modalities"] = {m: schema["modalities"][m] for m in ("clinical", "lifestyle")}
    schema.pop("subject_level")  # (the genotypes it names are not kept)
    schema["categorical"] = {c: v for c, v in schema.get("categorical", {}).items()
                             if c in schema["modalities"]["lifestyle"]}
    path = root / "outcome.parquet"
    write_table(frame.drop(columns=["age"]), path)
    (root / "outcome.schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    config = root / "config.yaml"
    model = {**{k: v for k, v in TINY_CONFIG["model"].items() if k != "classification"}, "wide": True}
    config.write_text(yaml.safe_dump({"model": model, "training": {**TINY_CONFIG["training"], "wide_start": "fitted"}}))
    return path, config, root


@pytest.fixture(scope="module")
def outcome_run(outcome_data):
    path, config, root = outcome_data
    out = root / "run"
    assert main(["train", "--data", str(path), "--config", str(config), "--out", str(out), "--quiet"]) == 0
    return out


def test_outcome_only_train_evaluate_predict_export(outcome_data, outcome_run, tmp_path, capsys):
    path, _, _ = outcome_data
    summary = json.loads((outcome_run / "summary.json").read_text())
    assert summary["model"]["regression"] is False and summary["model"]["classification"] is True
    assert summary["model"]["wide"] is True
    assert yaml.safe_load((outcome_run / "config.yaml").read_text())["training"]["wide_start"] == "fitted"
    assert set(summary["test"]) == {"auroc", "accuracy", "log_loss", "brier"}
    assert (outcome_run / "plots" / "reliability.png").exists()
    assert not (outcome_run / "plots" / "pred_vs_true.png").exists()
    history = [json.loads(line) for line in (outcome_run / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["val_loss"] == history[-1]["val_log_loss"] and "val_mae" not in history[-1]

    capsys.readouterr()
    assert main(["evaluate", "--run", str(outcome_run), "--data", str(path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "auroc" in printed and "logistic_regression" in printed and " mae " not in printed
    rows = json.loads((outcome_run / "eval.json").read_text())["rows"]
    assert {"HAMNet", "logistic_regression", "hist_gradient_boosting_classifier"} <= set(rows)
    assert rows["HAMNet"]["log_loss"] == pytest.approx(summary["test"]["log_loss"], rel=1e-6)
    assert rows["HAMNet without lifestyle"]["error_metric"] == "log_loss"
    for name in ("logistic_regression", "hist_gradient_boosting_classifier"):
        assert 0.0 <= rows[name]["brier"] <= 1.0 and "mae" not in rows[name]

    pred_file = tmp_path / "pred.csv"
    assert main(["predict", "--run", str(outcome_run), "--data", str(path), "--out", str(pred_file)]) == 0
    pred = pd.read_csv(pred_file)
    assert list(pred.columns) == ["subject_id", "outcome_probability", "outcome_probability_std"]
    assert pred["outcome_probability"].between(0, 1).all() and (pred["outcome_probability_std"] > 0).any()
    # the probabilities are temperature-scaled by the run's validation fit: MC dropout's, and
    # the distilled spread's own (what `hamnet predict` gives by default)
    calibration = json.loads((outcome_run / "calibration.json").read_text())
    assert calibration["logit_temperature"] == summary["logit_temperature"] != 1.0
    run = load_run(outcome_run)
    raw = RawModel.from_run(run)
    assert raw.uncertainty == "distilled"
    temperature = raw.distilled.calibration.logit_temperature
    raw = dataclasses.replace(raw, distilled=dataclasses.replace(raw.distilled, calibration=UNCALIBRATED))
    data = load_cohort(path, run.schema, run.config.data, require_target=False)
    uncalibrated = raw(cohort_to_raw(data, raw.spec))["outcome_probability"]
    expected, _ = tempered_probability(np.asarray(uncalibrated), None, temperature)
    np.testing.assert_allclose(pred["outcome_probability"], expected, atol=6e-5)

    onnx_file = tmp_path / "outcome.onnx"
    assert main(["export", "--run", str(outcome_run), "--data", str(path), "--out", str(onnx_file),
                 "--raw-inputs"]) == 0
    stored = json.loads((tmp_path / "outcome.onnx.json").read_text())
    assert stored["outputs"] == ["outcome_probability", "outcome_probability_std"]
    assert stored["parity"]["batch_64"]["max_abs"]["outcome_probability"] <= 1e-4
    assert "test_log_loss" in stored["parity"]
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["outcome_probability", "outcome_probability_std"]

    capsys.readouterr()  # compression compares regression accuracy: refused with the reason, not a KeyError
    assert main(["prune", "--run", str(outcome_run), "--data", str(path), "--out", str(tmp_path / "p")]) == 2
    assert "is an outcome-only run (no regression head)" in capsys.readouterr().err


def test_outcome_data_errors_name_the_column(outcome_data, tmp_path, capsys):
    path, config, root = outcome_data
    frame = pd.read_parquet(path)
    schema = yaml.safe_load((root / "outcome.schema.yaml").read_text())
    bad = tmp_path / "bad.csv"
    frame.assign(died=frame["died"].where(frame.index != 4)).to_csv(bad, index=False)
    (tmp_path / "bad.schema.yaml").write_text(yaml.safe_dump(schema))
    assert main(["train", "--data", str(bad), "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    assert "column 'died': subject" in capsys.readouterr().err  # a missing outcome, never read as 0

    neither = {k: v for k, v in schema.items() if k != "outcome"}
    (tmp_path / "bad.schema.yaml").write_text(yaml.safe_dump(neither))
    assert main(["train", "--data", str(bad), "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    assert "neither a 'target' (regression) nor an 'outcome'" in capsys.readouterr().err

    weighted = tmp_path / "weighted.yaml"
    weighted.write_text(yaml.safe_dump({"model": {"tier": "base"}, "training": {"loss": "beta_nll"}}))
    assert main(["train", "--data", str(path), "--config", str(weighted), "--out", str(tmp_path / "r")]) == 2
    assert "training.loss: applies to the regression head" in capsys.readouterr().err

    off = tmp_path / "off.yaml"
    off.write_text(yaml.safe_dump({"model": {"tier": "base", "classification": False}}))
    assert main(["train", "--data", str(path), "--config", str(off), "--out", str(tmp_path / "r")]) == 2
    assert "model.classification is false, but the schema names no 'target'" in capsys.readouterr().err
