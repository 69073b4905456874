"""MLflow tracking against a real `mlflow server` on 127.0.0.1 (tests/mlflow_server.py) and
a local file store: `hamnet train` and `prune` log parameters, per-epoch metrics and files;
a search is one parent run with a child per trial (the pipeline's stages and registered
model: tests/pipeline/test_pipeline.py)."""

import json

import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402

from hamnet_jax.cli import main  # noqa: E402


def run_of(directory):
    return json.loads((directory / "mlflow.json").read_text())["run_id"]


def test_train_and_prune_log_parameters_epochs_and_files(mlflow_uri, tiny_cohort, tiny_config_file, tmp_path,
                                                         monkeypatch):
    data, _ = tiny_cohort
    out, tracking = tmp_path / "run", ["--mlflow-uri", mlflow_uri, "--mlflow-experiment", "jobs", "--quiet"]
    assert main(["train", "--data", str(data), "--config", str(tiny_config_file), "--out", str(out),
                 "--epochs", "2", *tracking]) == 0
    client = MlflowClient(mlflow_uri)
    run = client.get_run(run_of(out))
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["training.num_epochs"] == "2" and run.data.params["data"] == str(data)
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(e["epoch"], pytest.approx(e["val_loss"])) for e in epochs]
    summary = json.loads((out / "summary.json").read_text())
    assert run.data.metrics["test/mae"] == pytest.approx(summary["test"]["mae"])
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "config.yaml", "metrics.jsonl", "plots"} <= files
    assert "plots/learning_curve.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}

    # a compression: its fine-tune's epochs under the stage's name; logged to a local file store
    pruned, store = tmp_path / "pruned", f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # (MLflow 3 keeps its file store behind this switch)
    assert main(["prune", "--run", str(out), "--data", str(data), "--out", str(pruned), "--method", "structured",
                 "--sparsity", "0.5", "--epochs", "1", "--mlflow-uri", store, "--quiet"]) == 0
    client = MlflowClient(store)
    prune = client.get_run(run_of(pruned))
    assert client.get_experiment(prune.info.experiment_id).name == "hamnet"  # monitoring.mlflow_experiment
    assert prune.info.status == "FINISHED" and prune.data.params["pruning.target_sparsity"] == "0.5"
    assert [m.step for m in client.get_metric_history(prune.info.run_id, "prune/cycle1/val_mae")] == [1]
    assert "summary.json" in {a.path for a in client.list_artifacts(prune.info.run_id)}


def test_a_search_is_a_parent_run_with_a_child_per_trial(mlflow_uri, tiny_cohort, tiny_config_file, tmp_path):
    data, _ = tiny_cohort
    study = tmp_path / "study"
    args = ["search", "hpo", "--data", str(data), "--config", str(tiny_config_file), "--out", str(study),
            "--trials", "2", "--scheduler", "full", "--max-epochs", "1", "--strategy", "random", "--no-best-run",
            "--quiet", "--mlflow-uri", mlflow_uri, "--mlflow-experiment", "studies"]
    assert main(args) == 0
    client = MlflowClient(mlflow_uri)
    parent = client.get_run(run_of(study))
    assert parent.info.status == "FINISHED" and parent.data.params["trials"] == "2"
    assert parent.data.metrics["trials"] == 2 and "best/val_mae" in parent.data.metrics
    experiment = client.get_experiment_by_name("studies").experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.info.run_name for c in children) == ["trial-00000", "trial-00001"]
    records = {r["trial"]: r for r in (json.loads(p.read_text()) for p in (study / "trials").glob("*.json"))}
    for child in children:
        record = records[int(child.info.run_name.split("-")[1])]
        assert child.info.status == "FINISHED" and child.data.tags["hamnet.status"] == "done"
        assert child.data.params["learning_rate"] == json.dumps(record["config"]["learning_rate"])
        assert child.data.metrics["val_mae"] == pytest.approx(record["results"][0]["metrics"]["val_mae"])
    assert main(args[:-4] + ["--resume", "--mlflow-uri", mlflow_uri, "--mlflow-experiment", "studies"]) == 0
    again = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(again) == 2  # a resumed study logs into its run and adds no trial twice
    assert all(len(client.get_metric_history(c.info.run_id, "val_mae")) == 1 for c in again)


@pytest.mark.parametrize("args, words", [
    (["--mlflow-uri", "file:{tmp}/mlruns"], "MLflow at file:"),  # MLflow's file store refuses by default
    (["--mlflow-experiment", "x"], "no --mlflow-uri"),
])
def test_tracking_options_that_cannot_work_are_refused_before_training(tiny_cohort, tmp_path, capsys, args, words):
    data, _ = tiny_cohort
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", *args]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
