"""`hamnet prune` / `hamnet quantize` on the tiny run, the facade's measured result, and
the config sections."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from hamnet_jax.cli import main
from hamnet_jax.config import PruningConfig, PruningMethod, QuantizationConfig, QuantizationMode
from hamnet_jax.config import config_from_dict
from hamnet_jax.errors import InputError
from hamnet_jax.runs.run_dir import load_run
from hamnet_jax.export.compressed_checkpoint import load_compressed

from ..tensorboard_events import scalars


def test_prune_structured_writes_a_smaller_working_run(tiny_run, tiny_cohort, tmp_path, capsys):
    data, _ = tiny_cohort
    out = tmp_path / "pruned"
    assert main(["prune", "--run", str(tiny_run), "--data", str(data), "--out", str(out), "--method", "structured",
                 "--sparsity", "0.5", "--epochs", "1"]) == 0
    assert "params" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimized_params"] < 0.75 * summary["baseline_params"]
    assert summary["compression_ratio"] == pytest.approx(summary["baseline_bytes"] / summary["optimized_bytes"])
    assert summary["speedup_factor"] == pytest.approx(summary["baseline_latency_ms"] / summary["optimized_latency_ms"])
    assert summary["accuracy_drop"] == pytest.approx(
        summary["optimized_metrics"]["mae"] / summary["baseline_metrics"]["mae"] - 1)
    logged = scalars(out / "tb")  # the fine-tune's epochs as TensorBoard scalars, per stage
    assert [step for step, _ in logged["prune/cycle1"]["val_mae"]] == [1]
    run = load_run(out)  # the compacted config round-trips through config.yaml
    assert run.model_config.mlp_dim and run.model_config.imaging_kept_features
    pred_file = tmp_path / "pred.csv"
    assert main(["predict", "--run", str(out), "--data", str(data), "--out", str(pred_file)]) == 0
    assert np.isfinite(pd.read_csv(pred_file)["prediction"]).all()
    assert main(["prune", "--run", str(tiny_run), "--data", str(data), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_quantization_aware_training_logs_its_epochs_to_tensorboard(tiny_run, tiny_cohort, tmp_path):
    data, _ = tiny_cohort
    config = tmp_path / "q.yaml"
    config.write_text("quantization:\n  qat_epochs: 2\n  batch_size: 32\n")
    out = tmp_path / "qat"
    assert main(["quantize", "--run", str(tiny_run), "--data", str(data), "--out", str(out), "--mode", "qat",
                 "--config", str(config), "--quiet"]) == 0
    logged = scalars(out / "tb")
    assert [step for step, _ in logged["quantize"]["val_mae"]] == [1, 2]
    assert json.loads((out / "summary.json").read_text())["optimized_metrics"]["mae"] > 0


def test_quantize_dynamic_writes_int8_checkpoint(tiny_run, tiny_cohort, tmp_path):
    data, _ = tiny_cohort
    out = tmp_path / "int8"
    assert main(["quantize", "--run", str(tiny_run), "--data", str(data), "--out", str(out), "--mode", "dynamic"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    # the tiny test model is mostly small leaves (biases, norms, scales): 2x; the standard tier's is >= 3.5x
    assert summary["execution"] == "dynamic" and summary["compression_ratio"] > 2.0
    weights = out / "weights.safetensors"
    assert summary["optimized_bytes"] == weights.stat().st_size == summary["weights_file_bytes"]
    assert not (out / "params").exists()  # the run holds the quantized weights themselves
    codes, scales, bits = load_compressed(weights)
    assert codes["fusion"]["block_0"]["mlp"]["fc1"]["kernel"].dtype == np.int8
    assert bits["fusion"]["block_0"]["mlp"]["fc1"]["kernel"] == 8
    assert abs(summary["accuracy_drop"]) < 0.2
    # evaluate runs the int8 path: its MAE is the quantized model's MAE in the summary
    from hamnet_jax.runs.evaluate import evaluate_run
    from hamnet_jax.runs.run_dir import load_run

    run = load_run(out)
    assert run.model.mode == "dynamic" and run.model.quant is not None
    # its distilled MC spread is refitted on the int8 path, not the source run's copied
    source = load_run(tiny_run).distilled
    assert run.distilled is not None and run.distilled.fitted_on["subjects"] == source.fitted_on["subjects"]
    assert not np.allclose(run.distilled.feature_mean, source.feature_mean)
    evaluated = evaluate_run(run, data, baselines=False)["rows"]["HAMNet"]["mae"]
    assert evaluated == pytest.approx(summary["test"]["mae"], rel=1e-6)
    # ... and not the float model's: int8 changes the (deterministic) test MAE
    assert summary["optimized_metrics"]["mae"] != summary["baseline_metrics"]["mae"]
    # its ONNX export carries the run's own int8 codes (Cast * scale), equal to the weight-only model
    assert main(["export", "--run", str(out), "--out", str(tmp_path / "q.onnx"), "--mc-samples", "0"]) == 0
    stored = json.loads((tmp_path / "q.onnx.json").read_text())
    assert stored["int8_weights"]["embedded"] == stored["int8_weights"]["quantized"] > 0
    assert stored["parity"]["batch_64"]["max_abs"]["prediction"] <= 1e-4
    import onnx

    inits = {t.name: t for t in onnx.load(tmp_path / "q.onnx").graph.initializer}
    fc1 = np.asarray(codes["fusion"]["block_0"]["mlp"]["fc1"]["kernel"])
    int8 = [onnx.numpy_helper.to_array(t) for t in inits.values() if t.data_type == onnx.TensorProto.INT8]
    assert any(a.size == fc1.size and np.array_equal(a.reshape(fc1.shape), fc1) for a in int8)


def test_bad_flags_and_sections_name_the_key(tiny_run, tiny_cohort, tmp_path, capsys):
    data, _ = tiny_cohort
    assert main(["prune", "--run", str(tiny_run), "--data", str(data), "--out", str(tmp_path / "x"),
                 "--method", "pixie"]) == 2
    assert "pruning.method" in capsys.readouterr().err
    assert main(["quantize", "--run", str(tiny_run), "--data", str(data), "--out", str(tmp_path / "y"),
                 "--precision", "int2"]) == 2
    assert "quantization.precision" in capsys.readouterr().err
    with pytest.raises(InputError, match="pruning.sparsity: unknown key"):
        config_from_dict({"pruning": {"sparsity": 0.5}})
    with pytest.raises(InputError, match="pruning.target_sparsity"):
        config_from_dict({"pruning": {"target_sparsity": 1.5}})
    cfg = config_from_dict(yaml.safe_load("pruning:\n  method: movement\n  target_sparsity: 0.7\n"
                                          "quantization:\n  mode: static\n  precision: int8\n"))
    assert cfg.sections["pruning"].target_sparsity == 0.7
    assert cfg.sections["quantization"].mode == QuantizationMode.STATIC
    assert QuantizationConfig(precision="fp16").mode == QuantizationMode.FP16
    assert PruningConfig.from_section({"method": "snip"}).method == PruningMethod.SNIP


@pytest.mark.slow  # (39 s; each precision's export alone: test_export's test_reduced_precision_exports_stay_close)
def test_half_precision_and_int8_runs_export_to_onnx(tiny_run, tiny_cohort, tmp_path, capsys):
    pytest.importorskip("jax2onnx")
    data, _ = tiny_cohort
    out = tmp_path / "fp16"
    assert main(["quantize", "--run", str(tiny_run), "--data", str(data), "--out", str(out),
                 "--precision", "fp16"]) == 0
    run = load_run(out)
    assert run.model_config.dtype == "float16"
    assert run.model.params["fusion"]["block_0"]["mlp"]["fc1"]["kernel"].dtype == np.float16
    capsys.readouterr()
    assert main(["export", "--run", str(out), "--out", str(tmp_path / "fp16.onnx")]) == 0
    printed = capsys.readouterr().out
    assert "traced in float32" in printed and "parity vs JAX float32 at batch 64" in printed
