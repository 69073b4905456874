import json

import numpy as np
import pandas as pd
import pytest

from hamnet_jax.cli import build_parser, main

SUBCOMMANDS = ("cohort", "train", "evaluate", "predict", "export", "serve", "loadtest", "prune", "quantize", "distill",
               "search", "drift", "bench", "deploy")


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help_on_every_subcommand(sub, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([sub, "--help"])
    assert e.value.code == 0
    assert "usage: hamnet " + sub in capsys.readouterr().out


def test_cohort_writes_data_and_schema(tmp_path, capsys):
    out = tmp_path / "c.csv"
    assert main(["cohort", "--subjects", "20", "--seed", "1", "--out", str(out), "--imaging-dim", "16"]) == 0
    frame = pd.read_csv(out)
    assert {"subject_id", "visit", "age", "bio_age", "died"} <= set(frame.columns)
    assert frame["subject_id"].nunique() == 20
    assert (tmp_path / "c.schema.yaml").exists()


def test_predict_and_evaluate(tiny_run, tiny_cohort, tmp_path, capsys):
    data, _ = tiny_cohort
    out = tmp_path / "pred.csv"
    assert main(["predict", "--run", str(tiny_run), "--data", str(data), "--out", str(out)]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns)[:7] == ["subject_id", "prediction", "aleatoric_std", "epistemic_std", "total_std",
                                      "lower_90", "upper_90"]
    # the tiny run has a mortality head: its probability and the spread over MC-dropout samples
    assert list(pred.columns)[7:] == ["outcome_probability", "outcome_probability_std"]
    assert pred["outcome_probability"].between(0, 1).all()
    assert pred["subject_id"].is_unique and np.isfinite(pred.drop(columns="subject_id").to_numpy()).all()
    assert (pred["lower_90"] < pred["prediction"]).all() and (pred["prediction"] < pred["upper_90"]).all()
    np.testing.assert_allclose(pred["total_std"] ** 2, pred["aleatoric_std"] ** 2 + pred["epistemic_std"] ** 2,
                               rtol=2e-3, atol=2e-3)

    from hamnet_jax.cache_root import cache_dir

    for old in [*cache_dir("baselines").glob("*.skops"), *tiny_run.glob("predictions-*.npz")]:
        old.unlink()
    assert main(["evaluate", "--run", str(tiny_run), "--data", str(data)]) == 0
    out = capsys.readouterr()
    table = out.out
    assert "hist_gradient_boosting" in table and "ridge" in table and "HAMNet without imaging" in table
    assert "fitting hist_gradient_boosting on" in out.err  # progress while the baselines fit
    result = json.loads((tiny_run / "eval.json").read_text())
    assert result["baselines_cached"] is False and result["baseline_features"] == "all-visits"
    assert result["predictions_cached"] is False
    # a second evaluate of the same run and data reuses the fitted baselines and HAMNet's
    # predictions: the same table
    assert main(["evaluate", "--run", str(tiny_run), "--data", str(data), "--quiet"]) == 0
    out = capsys.readouterr()
    assert "(reused from the run directory)" in out.out and out.err == ""
    assert "HAMNet's predictions reused from the run directory" in out.out
    again = json.loads((tiny_run / "eval.json").read_text())
    assert again["baselines_cached"] is True and again["predictions_cached"] is True
    assert again["rows"] == result["rows"]
    assert "fitted on the training split's all-visits features" in out.out
    # baselines on a sample of the training split: refitted, and the table says so
    assert main(["evaluate", "--run", str(tiny_run), "--data", str(data), "--quiet", "--baseline-subjects", "60"]) == 0
    out = capsys.readouterr().out
    sampled = json.loads((tiny_run / "eval.json").read_text())
    assert sampled["baseline_training_subjects"]["subjects"] == 60 and not sampled["baselines_cached"]
    assert f"a seeded sample of 60 of the {sampled['baseline_training_subjects']['of']:,} training subjects'" in out
    assert sampled["rows"]["HAMNet"] == result["rows"]["HAMNet"]
    rows = result["rows"]
    assert np.isfinite(rows["HAMNet without imaging"]["mae"])
    assert rows["HAMNet without imaging"]["subjects_with_modality"] > 0
    assert np.isfinite(rows["HAMNet without imaging"]["mae_increase_on_affected"])
    assert result["mae_ratio_vs_hist_gradient_boosting"] == pytest.approx(
        rows["HAMNet"]["mae"] / rows["hist_gradient_boosting"]["mae"])


def test_baselines_are_refitted_when_the_training_data_changes(tiny_cohort, tmp_path):
    from hamnet_jax.config import DataConfig
    from hamnet_jax.data.dataset import load_cohort
    from hamnet_jax.evaluation.baseline_cache import cached_baselines
    from hamnet_jax.evaluation.baselines import flatten_features, predict_baseline

    data, schema = tiny_cohort
    train = load_cohort(data, schema, DataConfig()).subset(np.arange(120))
    said = []
    first, cached = cached_baselines(tmp_path, train, 0, "last-visit", said.append)
    assert not cached and any("fitting ridge on 120 subjects" in s for s in said)
    assert flatten_features(train, "last-visit").shape[1] * train.visit_mask.shape[1] == \
        flatten_features(train).shape[1]
    again, cached = cached_baselines(tmp_path, train, 0, "last-visit")
    assert cached
    np.testing.assert_array_equal(predict_baseline(again["ridge"], train)["prediction"],
                                  predict_baseline(first["ridge"], train)["prediction"])
    train.targets[5] += 1.0  # one value the fit depends on changed: refitted
    _, cached = cached_baselines(tmp_path, train, 0, "last-visit")
    assert not cached
    from hamnet_jax.evaluation.baseline_cache import baseline_key

    stored = tmp_path / f"{baseline_key(train, 0, 'last-visit')[:32]}.skops"
    assert stored.exists() and not list(tmp_path.glob("baselines-*"))
    stored.write_bytes(b"torn")  # an unreadable file: refitted too
    _, cached = cached_baselines(tmp_path, train, 0, "last-visit", said.append)
    assert not cached and any("is unreadable (" in s and s.endswith("refitting") for s in said)
    # a file naming a type the cache never holds is not loaded (no code runs), whatever its key
    import skops.io as sio
    from fractions import Fraction

    key = baseline_key(train, 0, "last-visit")
    stored.write_bytes(sio.dumps({"key": key, "models": {"x": Fraction(1, 3)}}))
    said.clear()
    _, cached = cached_baselines(tmp_path, train, 0, "last-visit", said.append)
    assert not cached and any("names types this cache never holds (fractions.Fraction)" in s for s in said)


def test_predictions_are_recomputed_when_the_run_or_an_input_changes(tiny_run, tiny_cohort, tmp_path):
    import dataclasses
    import shutil

    import jax

    from hamnet_jax.config import DataConfig
    from hamnet_jax.data.dataset import load_cohort
    from hamnet_jax.runs.evaluate import predict_run
    from hamnet_jax.runs.prediction_cache import cached_predictions, run_fingerprint
    from hamnet_jax.runs.run_dir import load_run

    data, schema = tiny_cohort
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir, ignore=shutil.ignore_patterns("predictions-*", "checkpoints"))
    run = load_run(run_dir)
    subjects = load_cohort(data, schema, DataConfig()).subset(np.arange(40))
    calls = []

    def predict(run, arrays):
        calls.append(1)
        return predict_run(run, arrays)

    def cached(run, arrays):
        return cached_predictions(run, run_fingerprint(run), arrays, "test", lambda: predict(run, arrays))

    first, hit = cached(run, subjects)
    assert not hit and len(calls) == 1
    again, hit = cached(run, subjects)
    assert hit and len(calls) == 1
    for k in first:
        np.testing.assert_array_equal(again[k], first[k])
    subjects.values["clinical"][3, 0, 0] += 1.0  # one input cell changed
    _, hit = cached(run, subjects)
    assert not hit and len(calls) == 2
    recalibrated = dataclasses.replace(run.calibration, std_scale=run.calibration.std_scale * 1.1)
    changed = dataclasses.replace(run, calibration=recalibrated)
    assert run_fingerprint(changed) != run_fingerprint(run)
    params = jax.tree_util.tree_map(lambda p: p, run.params)
    params["mean_head"]["bias"] = params["mean_head"]["bias"] + 1.0  # retrained
    assert run_fingerprint(dataclasses.replace(run, params=params, model=None)) != run_fingerprint(run)
    (run_dir / "predictions-test.npz").write_bytes(b"torn")  # unreadable: predicted again and replaced
    _, hit = cached(run, subjects)
    assert not hit and len(calls) == 3
    assert cached(run, subjects)[1]


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    return err[0]


def test_bad_input_exits_2_with_one_line(tiny_run, tiny_cohort, tmp_path, capsys):
    data, _ = tiny_cohort
    frame = pd.read_parquet(data)
    frame.drop(columns=["albumin"]).to_parquet(tmp_path / "bad.parquet")
    assert main(["predict", "--run", str(tiny_run), "--data", str(tmp_path / "bad.parquet"),
                 "--out", str(tmp_path / "p.csv")]) == 2
    assert "missing column 'albumin'" in _error_line(capsys)

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("training:\n  epochz: 3\n")
    assert main(["train", "--data", str(data), "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "training.epochz: unknown key" in _error_line(capsys)

    assert main(["evaluate", "--run", str(tmp_path), "--data", str(data)]) == 2
    assert "not a finished run" in _error_line(capsys)


def test_no_modality_subject_is_a_clear_error(tiny_run, tiny_cohort, tmp_path, capsys):
    data, schema = tiny_cohort
    frame = pd.read_parquet(data)
    first = frame["subject_id"] == frame["subject_id"].iloc[0]
    feature_cols = [c for cols in schema.modalities.values() for c in cols]
    frame.loc[first, feature_cols] = np.nan
    frame.to_parquet(tmp_path / "empty.parquet")
    assert main(["predict", "--run", str(tiny_run), "--data", str(tmp_path / "empty.parquet"),
                 "--out", str(tmp_path / "p.csv")]) == 2
    line = _error_line(capsys)
    assert "no modality measured" in line and str(frame["subject_id"].iloc[0]) in line


def test_version_and_exit_codes_are_in_the_help(capsys):
    from hamnet_jax import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"hamnet-jax {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for line in ("0   success", "2   bad input", "3   a check found a problem", "74  a full disk", "1   a crash"):
        assert line in text
