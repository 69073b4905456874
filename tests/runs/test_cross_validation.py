"""k-fold cross-validation: the fold split, the config keys, and `hamnet cv` end to end
(two folds of the tiny cohort, resumed and refused as a user would meet them)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from hamnet_jax.cli import main
from hamnet_jax.config import DataConfig
from hamnet_jax.data.split import kfold_split
from hamnet_jax.errors import InputError

from ..conftest import TINY_CONFIG


def test_every_subject_is_tested_in_exactly_one_fold():
    ids = np.array([f"S{i}" for i in range(1000)])
    parts = [kfold_split(ids, 5, k, (0.7, 0.15, 0.15), seed=3) for k in range(5)]
    tested = np.concatenate([p["test"] for p in parts])
    assert sorted(tested.tolist()) == list(range(1000))
    for p in parts:
        assert set(p["train"]).isdisjoint(p["val"]) and set(p["train"]).isdisjoint(p["test"])
        assert len(p["train"]) + len(p["val"]) + len(p["test"]) == 1000
        assert 0.12 < len(p["val"]) / (len(p["train"]) + len(p["val"])) < 0.24  # 0.15 / 0.85 of the rest
        assert 150 < len(p["test"]) < 250
    shuffled = np.random.default_rng(0).permutation(1000)  # a subject's fold does not depend on row order
    again = kfold_split(ids[shuffled], 5, 2, (0.7, 0.15, 0.15), seed=3)
    assert set(ids[shuffled][again["test"]]) == set(ids[parts[2]["test"]])
    assert set(ids[kfold_split(ids, 5, 2, (0.7, 0.15, 0.15), seed=4)["test"]]) != set(ids[parts[2]["test"]])


def test_fold_keys_are_validated():
    assert DataConfig(cv_folds=5, cv_fold=4).cv_fold == 4
    with pytest.raises(InputError, match="data.cv_folds: 1"):
        DataConfig(cv_folds=1)
    with pytest.raises(InputError, match=r"data.cv_fold: 5 is not a fold of cv_folds=5 \(0-4\)"):
        DataConfig(cv_folds=5, cv_fold=5)
    with pytest.raises(InputError, match="data.cache_dir: names where the cohort cache lives, and data.cache is false"):
        DataConfig(cache=False, cache_dir="elsewhere")


def test_hamnet_cv_reports_every_model_over_the_folds_and_resumes(tiny_cohort, tmp_path, capsys):
    data, _ = tiny_cohort
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({**TINY_CONFIG, "model": {**TINY_CONFIG["model"], "classification": False},
                                      "training": {**TINY_CONFIG["training"], "num_epochs": 1}}))
    out = tmp_path / "cv"
    args = ["cv", "--data", str(data), "--config", str(config), "--folds", "2", "--out", str(out),
            "--baseline-features", "last-visit"]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "2-fold cross-validation" in printed.out and "fold 2/2: training" in printed.err
    summary = json.loads((out / "cv.json").read_text())
    assert set(summary["models"]) >= {"HAMNet", "ridge", "hist_gradient_boosting"}
    assert sum(summary["test_subjects"]) == 240  # every subject tested once
    mae = summary["models"]["HAMNet"]["mae"]
    assert len(mae["folds"]) == 2 and mae["mean"] == pytest.approx(np.mean(mae["folds"]))
    assert mae["sd"] == pytest.approx(np.std(mae["folds"], ddof=1))
    fold_config = yaml.safe_load((out / "fold-1" / "config.yaml").read_text())
    assert fold_config["data"]["cv_folds"] == 2 and fold_config["data"]["cv_fold"] == 1
    # the folds read the shared cohort cache: no copy of the data beside them
    assert fold_config["data"]["cache_dir"] is None and not any(out.glob("**/data_cache"))

    # a fold is an ordinary run: its own test split is the fold the CV tested
    from hamnet_jax.data.dataset import load_cohort, split_cohort
    from hamnet_jax.runs.run_dir import load_run

    run = load_run(out / "fold-0")
    parts = split_cohort(load_cohort(data, run.schema, run.config.data), run.config.data)
    assert parts["test"].num_subjects == summary["test_subjects"][0]

    # a crash after fold 0 was evaluated: the rerun keeps fold 0 and redoes only what is missing
    kept = (out / "fold-0" / "eval.json").stat().st_mtime_ns
    (out / "fold-1" / "eval.json").unlink()
    assert main(args + ["--quiet"]) == 0
    assert (out / "fold-0" / "eval.json").stat().st_mtime_ns == kept
    assert json.loads((out / "cv.json").read_text())["models"]["HAMNet"]["mae"] == mae

    capsys.readouterr()
    assert main(args + ["--folds", "3"]) == 2  # the last --folds wins
    assert "holds a cross-validation with other settings (folds" in capsys.readouterr().err
