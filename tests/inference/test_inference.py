"""Predictors: bucketed JAX (no recompilation), ONNX Runtime, the result cache, bad input,
fixed-mask MC dropout, and the HAMNetInferenceOptimizer facade."""

import numpy as np
import pytest

from hamnet_jax.config.sections import InferenceSection
from hamnet_jax.inference.factory import batch_buckets, build_predictor
from hamnet_jax.inference.predictors import JaxPredictor, Predictor
from hamnet_jax.inference.raw_inputs import random_raw
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.inference.result_cache import CachedPredictor
from hamnet_jax.optimization.inference_optimization import (HAMNetInferenceOptimizer, InferenceBackend,
                                                            InferenceOptimizationConfig)
from hamnet_jax.runs.run_dir import load_run


@pytest.fixture(scope="module")
def raw(tiny_run):
    return RawModel.from_run(load_run(tiny_run))


@pytest.fixture(scope="module")
def jax_predictor(raw):
    return JaxPredictor(raw, buckets=(1, 8, 32))


def rows(request, index):
    return {k: v[index] for k, v in request.items()}


def test_a_subject_gets_the_same_result_in_any_batch_without_recompiling(raw, jax_predictor):
    request = random_raw(raw.spec, raw.preprocessor, 45, seed=1)
    whole = jax_predictor.predict(request)  # 45 rows: one chunk of 32, one of 13 padded to 32
    for n in (1, 3, 8, 9, 20):
        part = jax_predictor.predict(rows(request, np.arange(n)))
        for name in raw.output_names:
            np.testing.assert_allclose(part[name], whole[name][:n], rtol=1e-6, atol=1e-5, err_msg=name)  # a few ulps
    assert jax_predictor.compiled_shapes <= 3  # one compilation per bucket, none per request size
    assert set(whole) == set(raw.output_names) and whole["prediction"].shape == (45,)
    assert np.all(whole["epistemic_std"] > 0) and np.all(whole["lower_90"] < whole["upper_90"])


def test_deterministic_mode_has_no_epistemic_output(raw):
    det = JaxPredictor(raw.with_mc_samples(0), buckets=(4,))
    out = det.predict(random_raw(raw.spec, raw.preprocessor, 3, seed=2))
    assert "epistemic_std" not in out
    np.testing.assert_allclose(out["total_std"], out["aleatoric_std"])


class CountingPredictor(Predictor):
    def __init__(self, inner):
        self.inner, self.spec, self.output_names, self.max_batch = inner, inner.spec, inner.output_names, 32
        self.rows_run = 0

    def run_batch(self, arrays):
        self.rows_run += next(iter(arrays.values())).shape[0]
        return self.inner.run_batch(arrays)


def test_cache_answers_repeats_without_the_model_and_keeps_its_bound(raw, jax_predictor):
    counting = CountingPredictor(jax_predictor)
    cache = CachedPredictor(counting, max_entries=10)
    request = random_raw(raw.spec, raw.preprocessor, 6, seed=3)
    first = cache.predict(request)
    assert counting.rows_run == 6
    again = cache.predict(request)
    assert counting.rows_run == 6  # answered from the cache: the model did not run
    for name in raw.output_names:
        np.testing.assert_array_equal(first[name], again[name])
    mixed = {k: np.concatenate([v[:2], random_raw(raw.spec, raw.preprocessor, 8, seed=4)[k]])
             for k, v in request.items()}
    cache.predict(mixed)
    assert counting.rows_run == 6 + 8  # only the 8 new subjects ran
    assert len(cache) == 10 and cache.stats()["evictions"] == 4
    stats = cache.stats()
    assert stats["hits"] == 8 and stats["misses"] == 14 and stats["hit_rate"] == pytest.approx(8 / 22)
    for seed in range(5, 9):
        cache.predict(random_raw(raw.spec, raw.preprocessor, 7, seed=seed))
        assert len(cache) <= 10


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("visit_times"), "missing ['visit_times']"),
    (lambda r: r.update(extra=r["clinical"]), "unknown ['extra']"),
    (lambda r: r.update(clinical=r["clinical"].astype(str)), "input 'clinical': dtype"),
    (lambda r: r.update(imaging=r["imaging"][:, :, :5]), "input 'imaging': shape"),
    (lambda r: r.update(genetic=r["genetic"][:3]), "input 'genetic': shape"),
    (lambda r: r["lifestyle"].__setitem__((4, 0, 1), -np.inf), "input 'lifestyle': ±inf at subject row 4"),
])
def test_bad_requests_name_the_input_and_row(raw, jax_predictor, change, message):
    request = {k: v.copy() for k, v in random_raw(raw.spec, raw.preprocessor, 6, seed=5).items()}
    change(request)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        jax_predictor.predict(request)


def test_a_subject_with_nothing_measured_is_named(raw, jax_predictor):
    request = random_raw(raw.spec, raw.preprocessor, 5, seed=6)
    for name in request:
        if name != "visit_times":
            request[name][2] = np.nan
    with pytest.raises(ValueError, match="subject row 2 has no modality measured"):
        jax_predictor.predict(request)


def test_buckets_and_options_from_the_inference_section(raw):
    assert batch_buckets(48, True) == (1, 2, 4, 8, 16, 32, 48) and batch_buckets(48, False) == (48,)
    predictor = build_predictor(raw, InferenceSection(batch_size=16, dynamic_batching=False, enable_caching=True,
                                                      cache_size=5, mc_samples=0))
    assert isinstance(predictor, CachedPredictor) and predictor.max_entries == 5
    assert predictor.inner.buckets == (16,) and "epistemic_std" not in predictor.output_names
    with pytest.raises(ValueError, match="int8 on the jax backend runs a quantized run"):
        build_predictor(raw, InferenceSection(precision_mode="int8"))
    with pytest.raises(ValueError, match="needs an exported .onnx file"):
        build_predictor(raw, InferenceSection(backend="onnxruntime"))


def test_half_precision_jax_backend_stays_close(raw):
    request = random_raw(raw.spec, raw.preprocessor, 8, seed=7)
    base = build_predictor(raw, InferenceSection(mc_samples=0)).predict(request)
    half = build_predictor(raw, InferenceSection(mc_samples=0, precision_mode="bf16")).predict(request)
    np.testing.assert_allclose(half["prediction"], base["prediction"], rtol=2e-2)


def test_inference_optimizer_facade(tiny_run, tmp_path):
    run = load_run(tiny_run)
    config = InferenceOptimizationConfig(backend=InferenceBackend.ONNXRUNTIME, precision_mode="int8",
                                         batch_size=16, enable_caching=True, mc_samples=0)
    optimizer = HAMNetInferenceOptimizer(run.model_config, config)
    sample = random_raw(RawModel.from_run(run).spec, run.preprocessor, 64, seed=8)
    paths = optimizer.optimize_model(tiny_run, sample, tmp_path / "optimized")
    assert set(paths) == {"onnxruntime"} and paths["onnxruntime"].exists()
    pipeline = optimizer.create_inference_pipeline("onnxruntime")
    out = pipeline(rows(sample, np.arange(20)))
    assert out["prediction"].shape == (20,) and isinstance(pipeline, CachedPredictor)
    loaded = optimizer.load_optimized_model(paths["onnxruntime"], "onnxruntime")
    np.testing.assert_allclose(loaded(rows(sample, np.arange(20)))["prediction"], out["prediction"], atol=1e-5)
    reference = JaxPredictor(RawModel.from_run(run, 0), (32,)).predict(rows(sample, np.arange(20)))
    np.testing.assert_allclose(out["prediction"], reference["prediction"], rtol=0.03)
    on_gpu = InferenceSection(backend="onnxruntime", precision_mode="int8", mc_samples=0, execution_providers=("cuda",))
    with pytest.raises(ValueError, match=r"provider\(s\) \['cuda'\] are not available here"):
        build_predictor(RawModel.from_run(run, 0), on_gpu, paths["onnxruntime"])
    with pytest.raises(ValueError, match="exported at int8, but inference.precision_mode is fp16"):
        build_predictor(RawModel.from_run(run, 0), InferenceSection(backend="onnxruntime", precision_mode="fp16"),
                        paths["onnxruntime"])
    with pytest.raises(ValueError, match="model_config does not describe the run"):
        HAMNetInferenceOptimizer(run.model_config.replace(embed_dim=8, num_heads=2), config).optimize_model(tiny_run)
    with pytest.raises(ValueError, match="precision_mode"):
        InferenceOptimizationConfig(precision_mode="int4").section()
