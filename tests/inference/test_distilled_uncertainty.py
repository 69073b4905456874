"""The distilled MC-dropout spread: the fit, what a trained run stores, the raw-model and
exported paths agreeing with the batch path, and the options that choose it."""

import json

import numpy as np
import pytest

from hamnet_jax.cli import main
from hamnet_jax.config.sections import InferenceSection
from hamnet_jax.data.cohort_batches import model_input
from hamnet_jax.errors import InputError
from hamnet_jax.inference.distilled_uncertainty import (DistilledUncertainty, distillation_rows, distilled_predict,
                                                        ridge_log_fit)
from hamnet_jax.inference.factory import build_predictor
from hamnet_jax.inference.predictors import OnnxPredictor
from hamnet_jax.inference.raw_inputs import cohort_to_raw
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.runs.run_dir import DISTILLED_FILE, load_run


@pytest.fixture(scope="module")
def run(tiny_run):
    return load_run(tiny_run)


@pytest.fixture(scope="module")
def test_split(tiny_splits):
    return tiny_splits["test"]


def test_ridge_log_fit_recovers_a_log_linear_spread_and_matches_the_mean_variance():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((3000, 5)).astype(np.float32)
    true_w = np.array([0.5, -0.3, 0.0, 0.2, 0.0])
    spread = np.exp(z @ true_w - 1.0 + 0.3 * rng.standard_normal(3000))  # noisy per-subject MC estimates
    weights, bias = ridge_log_fit(z, spread, penalty=1e-4)
    np.testing.assert_allclose(weights, true_w, atol=0.03)
    fitted = np.exp(z @ weights + bias)
    assert np.mean(fitted ** 2) == pytest.approx(np.mean(spread ** 2), rel=1e-6)  # variance kept on average
    assert np.corrcoef(np.log(fitted), z @ true_w)[0, 1] > 0.99


def test_distillation_rows_are_a_seeded_sorted_subset():
    rows = distillation_rows(5000, seed=3)
    assert rows.size == 2000 and np.all(np.diff(rows) > 0) and rows.max() < 5000
    np.testing.assert_array_equal(rows, distillation_rows(5000, seed=3))
    np.testing.assert_array_equal(distillation_rows(40, seed=3), np.arange(40))


def test_a_trained_run_stores_its_distilled_spread_and_serves_it_by_default(run, test_split):
    stored = json.loads((run.path / DISTILLED_FILE).read_text())
    assert set(stored["weights"]) == {"epistemic_std", "probability_std"}  # both heads of the tiny run
    assert stored["fitted_on"]["mc_samples"] == run.config.training.mc_samples
    raw = RawModel.from_run(run)
    assert raw.uncertainty == "distilled" and raw.mc_samples == 0
    assert {"epistemic_std", "outcome_probability_std"} <= set(raw.output_names)
    # the raw-input path equals the batch path on the same subjects
    got = build_predictor(raw, InferenceSection()).predict(cohort_to_raw(test_split, raw.spec))
    batch = model_input(run.preprocessor, test_split).pad_visits(run.config.data.max_visits)
    want = distilled_predict(run.distilled, run.model.apply_fn(), run.params, batch, run.preprocessor.target_mean,
                             run.preprocessor.target_std)
    for name in raw.output_names:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-4, err_msg=name)
    total = np.sqrt(got["aleatoric_std"] ** 2 + got["epistemic_std"] ** 2)  # (each std calibrated)
    np.testing.assert_allclose(got["total_std"], total, rtol=1e-5)
    assert np.all(got["epistemic_std"] > 0)
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["test_distilled_uncertainty"]["mae"] == pytest.approx(
        float(np.mean(np.abs(want["prediction"] - test_split.targets))), rel=1e-5)


def test_the_config_the_cli_and_the_model_know_the_same_modes():
    import typing

    from hamnet_jax.cli.inference_commands import UNCERTAINTY_CHOICES
    from hamnet_jax.inference.raw_model import UNCERTAINTY_MODES

    declared = typing.get_args(typing.get_type_hints(InferenceSection)["uncertainty"])
    assert UNCERTAINTY_CHOICES == UNCERTAINTY_MODES == declared


def test_the_options_choose_the_spread_and_refuse_contradictions(run):
    assert RawModel.from_run(run, uncertainty="mc").uncertainty == "mc"
    assert RawModel.from_run(run, mc_samples=3).mc_samples == 3  # samples given: MC dropout
    assert RawModel.from_run(run, mc_samples=0).uncertainty == "none"
    with pytest.raises(InputError, match="inference.mc_samples .* distilled"):
        RawModel.from_run(run, mc_samples=3, uncertainty="distilled")
    with pytest.raises(InputError, match="inference.uncertainty: unknown 'ensemble'"):
        RawModel.from_run(run, uncertainty="ensemble")
    without = type(run)(**{**run.__dict__, "distilled": None})  # a run trained before the spread was fitted
    assert RawModel.from_run(without).uncertainty == "mc"
    with pytest.raises(InputError, match="has no distilled uncertainty"):
        RawModel.from_run(without, uncertainty="distilled")
    with pytest.raises(ValueError, match="an unknown-key"):
        InferenceSection(uncertainty="an unknown-key")
    from hamnet_jax.optimization.inference_optimization import InferenceOptimizationConfig

    assert InferenceOptimizationConfig(uncertainty="mc").section().uncertainty == "mc"  # the facade passes it on


def test_a_bad_stored_spread_is_an_error_naming_the_file(run, tmp_path):
    good = run.distilled.to_dict()
    assert DistilledUncertainty.from_dict(good).bias == run.distilled.bias
    for bad, match in ((dict(good, weights={"epistemic_std": [0.0]}, bias={"epistemic_std": 0.0}), "features"),
                       (dict(good, bias={}), "same names")):
        with pytest.raises(ValueError, match=match):
            DistilledUncertainty.from_dict(bad)


def test_the_distilled_graph_equals_the_jax_model_and_its_sidecar_says_so(run, test_split, tmp_path):
    out = tmp_path / "distilled.onnx"
    assert main(["export", "--run", str(run.path), "--out", str(out), "--raw-inputs"]) == 0
    stored = json.loads((tmp_path / "distilled.onnx.json").read_text())
    assert stored["uncertainty"] == "distilled" and stored["mc_samples"] == 0 and "epistemic_std" in stored["outputs"]
    raw = RawModel.from_run(run)
    request = cohort_to_raw(test_split, raw.spec)
    got = OnnxPredictor(out, raw.spec).predict(request)
    want = build_predictor(raw, InferenceSection()).predict(request)
    for name in raw.output_names:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=2e-4, err_msg=name)
    with pytest.raises(InputError, match="exported with uncertainty distilled, but inference.uncertainty is mc"):
        build_predictor(RawModel.from_run(run, uncertainty="mc"),
                        InferenceSection(backend="onnxruntime", uncertainty="mc"), out)
