"""`hamnet prune` / `hamnet quantize` on the tiny run, the facade's measured result, and
the config sections."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from hamnet_jax.cli import main
from hamnet_jax.config import PruningConfig, QuantizationConfig, QuantizationMode
from hamnet_jax.config import config_from_dict
from hamnet_jax.errors import InputError
from hamnet_jax.run_dir import load_run
from hamnet_jax.export.compressed_checkpoint import load_compressed


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
    run = load_run(out)  # the compacted config round-trips through config.yaml
    assert run.model_config.mlp_dim and run.model_config.imaging_kept_features
    pred_file = tmp_path / "pred.csv"
    assert main(["predict", "--run", str(out), "--data", str(data), "--out", str(pred_file)]) == 0
    assert np.isfinite(pd.read_csv(pred_file)["prediction"]).all()
    assert main(["prune", "--run", str(tiny_run), "--data", str(data), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_quantize_dynamic_writes_int8_checkpoint(tiny_run, tiny_cohort, tmp_path):
    data, _ = tiny_cohort
    out = tmp_path / "int8"
    assert main(["quantize", "--run", str(tiny_run), "--data", str(data), "--out", str(out), "--mode", "dynamic"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["execution"] == "dynamic" and summary["compression_ratio"] > 2.5
    assert summary["optimized_bytes"] == (out / "compressed.npz").stat().st_size
    codes, scales, bits = load_compressed(out / "compressed.npz")
    assert codes["fusion"]["block_0"]["mlp"]["fc1"]["kernel"].dtype == np.int8
    assert bits["fusion"]["block_0"]["mlp"]["fc1"]["kernel"] == 8
    assert abs(summary["accuracy_drop"]) < 0.2


def test_bad_flags_and_sections_name_the_key(tiny_run, tiny_cohort, tmp_path, capsys):
    data, _ = tiny_cohort
    assert main(["prune", "--run", str(tiny_run), "--data", str(data), "--out", str(tmp_path / "x"),
                 "--method", "pixie"]) == 2
    assert "pruning.method" in capsys.readouterr().err
    assert main(["quantize", "--run", str(tiny_run), "--data", str(data), "--out", str(tmp_path / "y"),
                 "--precision", "int2"]) == 2
    assert "quantization.precision" in capsys.readouterr().err
    with pytest.raises(InputError, match="'pruning'.*unknown key 'sparsity'"):
        config_from_dict({"pruning": {"sparsity": 0.5}})
    with pytest.raises(InputError, match="pruning.target_sparsity"):
        config_from_dict({"pruning": {"target_sparsity": 1.5}})
    cfg = config_from_dict(yaml.safe_load("pruning:\n  method: movement\n  target_sparsity: 0.7\n"
                                          "quantization:\n  mode: static\n  precision: int8\n"))
    assert PruningConfig.from_section(cfg.sections["pruning"]).target_sparsity == 0.7
    assert QuantizationConfig.from_section(cfg.sections["quantization"]).mode == QuantizationMode.STATIC
    assert QuantizationConfig(precision="fp16").mode == QuantizationMode.FP16
    assert not any("pruning" in n for n in cfg.notes)
