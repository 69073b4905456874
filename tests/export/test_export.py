"""ONNX export of a run: raw-input and standardized graphs, every precision, parity stored."""

import dataclasses
import json

import numpy as np
import onnx
import pandas as pd
import pytest

from hamnet_jax.cli import main
from hamnet_jax.cohort.default import generate_cohort
from hamnet_jax.data.dataset import load_cohort
from hamnet_jax.data.tables import write_table
from hamnet_jax.runs.evaluate import predict_run
from hamnet_jax.export.onnx_export import FP16_TOLERANCE, export_run_onnx
from hamnet_jax.config.sections import InferenceSection
from hamnet_jax.inference.factory import build_predictor
from hamnet_jax.inference.predictors import OnnxPredictor
from hamnet_jax.inference.raw_inputs import cohort_to_raw
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.runs.run_dir import load_run

from ..conftest import TINY_DIMS


@pytest.fixture(scope="module")
def run(tiny_run):
    return load_run(tiny_run)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory, run):
    """A file of new subjects (another seed), one visit fewer for some: the run never saw them."""
    frame, _ = generate_cohort(40, seed=11, dims=TINY_DIMS)
    path = tmp_path_factory.mktemp("held_out") / "new.parquet"
    write_table(frame, path)
    return path


@pytest.fixture(scope="module")
def raw_mc_export(run, tmp_path_factory):
    """The raw-input graph with the run's MC samples, through the CLI (shared by tests)."""
    out = tmp_path_factory.mktemp("export") / "raw.onnx"
    assert main(["export", "--run", str(run.path), "--out", str(out), "--raw-inputs", "--uncertainty", "mc"]) == 0
    return out


def test_dynamic_batching_runs_every_size_unpadded_on_the_sessions_asked_for(run, raw_mc_export, held_out):
    """By default one session of symbolic batch; `fixed_batch_sessions` adds sessions of fixed
    batch for those sizes. A 5-row call runs unpadded and gives each row what it gets alone."""
    raw = RawModel.from_run(run)
    options = InferenceSection(backend="onnxruntime", uncertainty="mc", batch_size=8)
    symbolic = build_predictor(raw, options, raw_mc_export)
    assert symbolic.sessions == {} and symbolic.buckets is None and symbolic.warmup_sizes == (8,)
    predictor = build_predictor(raw, dataclasses.replace(options, fixed_batch_sessions=(1, 8)), raw_mc_export)
    assert sorted(predictor.sessions) == [1, 8] and predictor.buckets is None
    assert predictor.warmup_sizes == (1, 8, 2)  # every session once: the symbolic one at 2
    request = cohort_to_raw(load_cohort(held_out, run.schema, run.config.data, require_target=False),
                            predictor.spec)
    five = {k: v[:5] for k, v in request.items()}
    assert predictor.bucket(5) == 5
    together, unfixed = predictor.predict(five), symbolic.predict(five)
    alone = [predictor.predict({k: v[i:i + 1] for k, v in five.items()}) for i in range(5)]
    for name in together:
        np.testing.assert_allclose(together[name], np.concatenate([a[name] for a in alone]), atol=1e-4, err_msg=name)
        np.testing.assert_allclose(unfixed[name], together[name], atol=1e-4, err_msg=name)
    padded = build_predictor(raw, dataclasses.replace(options, dynamic_batching=False), raw_mc_export)
    assert sorted(padded.sessions) == [8] and padded.bucket(5) == 8
    np.testing.assert_allclose(padded.predict(five)["prediction"], together["prediction"], atol=1e-4)
    only_one = build_predictor(raw, dataclasses.replace(options, fixed_batch_sessions=(1,)), raw_mc_export)
    assert sorted(only_one.sessions) == [1]  # exactly the sizes asked for
    with pytest.raises(ValueError, match=r"fixed_batch_sessions: \[16\] exceed inference.batch_size \(8\)"):
        InferenceSection(backend="onnxruntime", batch_size=8, fixed_batch_sessions=(1, 16))
    with pytest.raises(ValueError, match="fixed_batch_sessions applies to backend onnxruntime with dynamic_batching"):
        dataclasses.replace(options, fixed_batch_sessions=(1,), dynamic_batching=False)
    with pytest.raises(ValueError, match="here backend jax"):
        InferenceSection(fixed_batch_sessions=(1,))


def test_raw_input_graph_equals_hamnet_predict_on_a_held_out_file(run, raw_mc_export, held_out, tmp_path):
    data = load_cohort(held_out, run.schema, run.config.data, require_target=False)
    want = predict_run(run, data)
    predictor = OnnxPredictor(raw_mc_export, RawModel.from_run(run).spec)
    got = predictor.predict(cohort_to_raw(data, predictor.spec))
    assert set(got) == set(want)  # prediction, aleatoric/epistemic/total std, interval, outcome probability
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-4, err_msg=name)
    # and through the CLI: hamnet predict --backend onnx writes the same CSV as the JAX backend
    for backend, extra in (("jax", ["--uncertainty", "mc"]), ("onnx", ["--model", str(raw_mc_export)])):
        assert main(["predict", "--run", str(run.path), "--data", str(held_out), "--out",
                     str(tmp_path / f"{backend}.csv"), "--backend", backend, *extra]) == 0
    a, b = (pd.read_csv(tmp_path / f"{k}.csv") for k in ("jax", "onnx"))
    assert (a["subject_id"] == b["subject_id"]).all()
    np.testing.assert_allclose(a["prediction"], b["prediction"], atol=2e-4)


def test_export_prints_parity_only_and_stores_it(run, raw_mc_export, capsys, tmp_path):
    out = tmp_path / "std.onnx"
    assert main(["export", "--run", str(run.path), "--out", str(out), "--mc-samples", "0"]) == 0
    captured = capsys.readouterr()
    assert "onnx_ir" not in captured.out + captured.err and "Warning" not in captured.out + captured.err
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith(f"wrote {out}") and "standardized arrays" in lines[0] and "deterministic" in lines[0]
    assert all(line.startswith(("parity", "described")) for line in lines[1:]), lines
    stored = json.loads((out.parent / "std.onnx.json").read_text())
    assert stored["precision"] == "fp32" and stored["mc_samples"] == 0 and not stored["raw_inputs"]
    assert "epistemic_std" not in stored["outputs"]  # deterministic graphs say which outputs they have
    assert stored["parity"]["batch_64"]["max_abs"]["prediction"] <= 1e-4
    mc = json.loads((raw_mc_export.parent / "raw.onnx.json").read_text())
    assert mc["mc_samples"] == run.config.training.mc_samples and "epistemic_std" in mc["outputs"]


def test_the_exported_graph_declares_no_shape_onnx_contradicts(raw_mc_export):
    """Every declared intermediate shape agrees with ONNX's own inference, so ONNX Runtime opens
    the graph at its default log level without a word (it used to log `Error merging shape
    info` for a broadcasting Mul jax2onnx declared with the wrong shape)."""
    import subprocess
    import sys

    from hamnet_jax.export.onnx_graph import wrong_shapes

    assert wrong_shapes(onnx.load(raw_mc_export)) == []
    script = ("import onnxruntime as ort; ort.set_default_logger_severity(2); "
              f"ort.InferenceSession({str(raw_mc_export)!r}, providers=['CPUExecutionProvider'])")
    opened = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert opened.returncode == 0, opened.stderr
    assert [line for line in opened.stderr.splitlines() if "[W:" in line or "[E:" in line] == []


@pytest.mark.parametrize("precision", ["fp16", "int8", "int8-dynamic"])
def test_reduced_precision_exports_stay_close(run, tiny_splits, precision, tmp_path):
    from hamnet_jax.export.onnx_export import EXPORT_STEPS

    raw = RawModel.from_run(run, 0)
    steps = []
    result = export_run_onnx(raw, tmp_path / "m.onnx", precision, True, tiny_splits["train"], tiny_splits["test"],
                             on_step=steps.append)
    assert steps == list(EXPORT_STEPS)  # what `hamnet export`'s bar counts
    parity = result.parity
    if precision == "fp16":
        assert parity["batch_64"]["prediction_max_rel"] <= FP16_TOLERANCE
    else:  # int8: the tiny 2-epoch model loses little MAE (the real-model figure is in bench_inference)
        assert abs(parity["test_mae"]["relative_change"]) < 0.05, parity["test_mae"]
        assert "within_tolerance" in parity
    graph = onnx.load(result.path)
    weight_types = {onnx.helper.tensor_dtype_to_np_dtype(t.data_type) for t in graph.graph.initializer
                    if np.prod(t.dims) > 256}  # the projection weights, not small constants
    assert np.dtype(np.float16 if precision == "fp16" else np.int8) in weight_types, weight_types


def test_static_int8_without_calibration_data_is_a_clear_error(run, tmp_path, capsys):
    assert main(["export", "--run", str(run.path), "--out", str(tmp_path / "q.onnx"), "--format", "onnx-int8"]) == 2
    assert "--data" in capsys.readouterr().err
    # options that would be ignored are refused
    assert main(["export", "--run", str(run.path), "--out", str(tmp_path / "q.onnx"), "--calibration", "entropy"]) == 2
    assert "--calibration applies to static int8" in capsys.readouterr().err
    assert main(["export", "--run", str(run.path), "--out", str(tmp_path / "q.onnx"), "--max-batch", "64"]) == 2
    assert "--max-batch sizes a TensorRT engine" in capsys.readouterr().err


def test_tensorrt_where_it_is_missing_is_a_one_line_error(run, tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here: the GPU check (experiments/gpu_check.py) covers it")
    except ImportError:
        pass
    assert main(["export", "--run", str(run.path), "--out", str(tmp_path / "m.engine"), "--format", "tensorrt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensorrt" in err[0]
