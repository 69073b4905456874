"""Users' own data with one modality and one visit: train -> evaluate -> predict -> export
works for each kind, and `evaluate` says which modality-removal rows it could not measure.

`slow`: each kind is a train, evaluate, predict and export of its own (~55 s cold)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from hamnet_jax.cli import main
from hamnet_jax.data.tables import read_table

from ..conftest import TINY_CONFIG

ONE_MODALITY_CONFIG = {**TINY_CONFIG, "model": {**TINY_CONFIG["model"], "classification": False},
                       "training": {**TINY_CONFIG["training"], "num_epochs": 1, "mc_samples": 2}}


def one_modality_file(tiny_cohort, modality: str, root) -> tuple:
    """The tiny cohort's last visits with only `modality`'s columns, as a CSV and its schema."""
    data, schema = tiny_cohort
    frame = read_table(data).sort_values(["subject_id", "visit"]).groupby("subject_id").tail(1)
    columns = list(schema.modalities[modality])
    frame = frame[["subject_id", "age", *columns]]
    # every subject keeps the modality (the generated cohort has imaging for a few only)
    frame = frame[frame[columns].notna().any(axis=1)].reset_index(drop=True)
    path = root / f"{modality}.only.csv"
    frame.to_csv(path, index=False)
    raw = {"subject_id": "subject_id", "target": "age", "modalities": {modality: columns}}
    if modality == "lifestyle":
        raw["categorical"] = {c: list(schema.categorical[c]) for c in schema.categorical_columns}
    (root / f"{modality}.only.schema.yaml").write_text(yaml.safe_dump(raw))
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(ONE_MODALITY_CONFIG))
    return path, config, len(frame)


def run_every_command(tiny_cohort, modality: str, root, capsys) -> None:
    data, config, subjects = one_modality_file(tiny_cohort, modality, root)
    assert subjects >= 40, subjects
    run = root / "run"
    assert main(["train", "--data", str(data), "--config", str(config), "--out", str(run)]) == 0

    assert main(["evaluate", "--run", str(run), "--data", str(data), "--no-baselines"]) == 0
    table = capsys.readouterr().out
    assert f"HAMNet without {modality}: not measured (no test subject has a modality other than {modality})" in table
    result = json.loads((run / "eval.json").read_text())
    assert list(result["rows"]) == ["HAMNet"] and np.isfinite(result["rows"]["HAMNet"]["mae"])
    assert list(result["skipped_rows"]) == [f"HAMNet without {modality}"]

    pred_path = root / "pred.csv"
    assert main(["predict", "--run", str(run), "--data", str(data), "--out", str(pred_path)]) == 0
    pred = pd.read_csv(pred_path)
    assert len(pred) == subjects and np.isfinite(pred["prediction"]).all()

    assert main(["export", "--run", str(run), "--out", str(root / "model.onnx"), "--raw-inputs"]) == 0
    assert "parity" in capsys.readouterr().out.lower()


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["lifestyle", "clinical", "imaging", "genetic"])
def test_each_single_modality_runs_every_command(tiny_cohort, tmp_path, capsys, modality):
    run_every_command(tiny_cohort, modality, tmp_path, capsys)
