"""The end-to-end pipeline: stage planning and configs, the choices it makes, its
identity guard, the facades, and one tiny pipeline killed with SIGKILL mid-stage and
rerun, whose directory the report tests read (the full tiny preset, with every stage,
is the slow test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml

from hamnet_jax.config import config_from_dict, load_config
from hamnet_jax.errors import InputError
from hamnet_jax.pipeline.measure import choose_served
from hamnet_jax.pipeline.runner import _claim, planned_stages
from hamnet_jax.pipeline.stage_configs import baseline_config, optimized_config, unused_keys
from hamnet_jax.pipeline.stages import _pick, check_served_uncertainty

from ..conftest import TINY_CONFIG


def test_stages_follow_the_switches():
    everything = config_from_dict({"optimization": {k: True for k in (
        "enable_nas", "enable_hyperparameter_opt", "enable_pruning", "enable_distillation", "enable_inference_opt",
        "enable_benchmarking", "enable_monitoring")}})
    assert planned_stages(everything, builtin_cohort=True) == [
        "cohort", "baseline", "nas", "hpo", "train", "distill", "prune", "quantize", "export", "bench", "repository",
        "monitoring"]
    assert planned_stages(config_from_dict({}), builtin_cohort=False) == ["baseline", "repository"]
    # quantization follows pruning unless switched on its own (HAMNET_ENABLE_QUANTIZATION too)
    pruning = config_from_dict({"optimization": {"enable_pruning": True, "enable_quantization": False}})
    assert planned_stages(pruning, False) == ["baseline", "prune", "repository"]
    env = load_config(None, {"HAMNET_ENABLE_QUANTIZATION": "true", "HAMNET_ENABLE_REGULARIZATION": "true"})
    assert planned_stages(env, False) == ["baseline", "train", "quantize", "repository"]


def test_baseline_is_plain_and_the_switches_add_to_it():
    config = config_from_dict({
        "optimization": {"enable_regularization": False, "enable_training_opt": True},
        "training": {"precision_mode": "bf16", "num_epochs": 3}, "regularization": {"dropout_rate": 0.2}})
    base = baseline_config(config)
    assert base.model["tier"] == "standard" and base.training.precision_mode == "fp32"
    assert base.training.num_epochs == 3 and "regularization" not in base.sections
    opt = optimized_config(config, {"embed_dim": 32}, {"learning_rate": 1e-3})
    assert opt.model["embed_dim"] == 32 and opt.training.learning_rate == 1e-3
    assert opt.training.precision_mode == "bf16"  # enable_training_opt keeps the optimization keys
    assert "regularization" not in opt.sections  # enable_regularization is off ...
    assert unused_keys(config) == ["regularization.dropout_rate"]  # ... and that is said


def test_config_layers_preset_file_overrides_environment(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"training": {"num_epochs": 5, "batch_size": 16}}))
    config = load_config(path, {"HAMNET_BATCH_SIZE": "8"}, defaults={"training": {"num_epochs": 9, "seed": 4}},
                         overrides={"training": {"num_epochs": 7}})
    assert (config.training.num_epochs, config.training.batch_size, config.training.seed) == (7, 8, 4)


def test_an_uncertainty_the_pipeline_does_not_serve_is_refused_before_any_stage(tmp_path):
    from hamnet_jax.pipeline.runner import run_pipeline

    with pytest.raises(InputError, match="inference.uncertainty: distilled: the pipeline serves and measures MC"):
        run_pipeline(tmp_path / "p", overrides={"inference": {"uncertainty": "distilled"}}, say=lambda line: None)
    assert not (tmp_path / "p").exists()
    check_served_uncertainty(config_from_dict({"inference": {"uncertainty": "mc"}}))  # what it does: accepted


def test_the_pipeline_studies_promote_synchronously_unless_a_scheduler_is_named():
    from hamnet_jax.search.study import StudyRequest, study_strategy

    def study_scheduler(config, kind):  # what the pipeline's study request resolves to
        return study_strategy(StudyRequest(kind=kind, data="d", out="o", default_scheduler="sha"), config)[1]

    quick = load_config(None, {}, {"nas": {"search_strategy": "evolutionary"},
                                   "hyperparameter_optimization": {"strategy": "random"}})
    assert study_scheduler(quick, "nas") == "sha" and study_scheduler(quick, "hpo") == "sha"
    named = load_config(None, {}, {"hyperparameter_optimization": {"strategy": "hyperband"}})
    assert study_scheduler(named, "hpo") == "hyperband"  # the section's scheduler (hyperband) is kept


def test_the_pareto_chart_draws_every_trial_and_the_front(tmp_path):
    from hamnet_jax.pipeline.report import charts, search_points

    def point(trial, budget, mae, flops):
        return {"trial": trial, "budget": budget, "objectives": {"val_mae": mae, "flops": flops}}

    every = [point(0, 1, 0.73, 2.0e6), point(1, 1, 0.62, 1.5e6), point(1, 2, 0.37, 1.5e6), point(2, 1, 0.40, 3.7e6),
             point(3, 1, 0.59, 1.6e6)]
    nas = {"objectives": ["val_mae", "flops"], "all": every, "pareto_front": [every[2]], "chosen": every[2],
           "trials": 4, "full_budget": 2}
    by_budget, front = search_points(nas)
    assert by_budget == {1: [(2.0e6, 0.73), (1.5e6, 0.62), (3.7e6, 0.40), (1.6e6, 0.59)], 2: [(1.5e6, 0.37)]}
    assert front == [(1.5e6, 0.37)]
    (tmp_path / "nas").mkdir()
    (tmp_path / "nas" / "stage.json").write_text(json.dumps({"stage": "nas", "outputs": nas}))
    assert [p.name for p in charts(tmp_path, [])] == ["pareto_front.png"]
    del nas["all"]  # a record written before the stage kept every trial: the front alone
    assert search_points(nas) == ({}, [(1.5e6, 0.37)])


def test_nas_picks_the_cheapest_architecture_within_the_tolerance():
    front = [{"trial": 0, "objectives": {"val_mae": 3.00, "flops": 900.0}},
             {"trial": 1, "objectives": {"val_mae": 3.05, "flops": 400.0}},
             {"trial": 2, "objectives": {"val_mae": 3.50, "flops": 100.0}}]
    assert _pick(front, ["val_mae", "flops"], 0.02)["trial"] == 1
    assert _pick(front, ["val_mae", "flops"], 0.001)["trial"] == 0
    assert _pick(front, ["val_mae"], 0.5)["trial"] == 0


def test_the_served_model_is_the_fastest_within_the_tolerance():
    rows = [{"name": "base", "accuracy": {"mae": 3.0}}, {"name": "small", "accuracy": {"mae": 3.05}},
            {"name": "tiny", "accuracy": {"mae": 3.2}}]
    latency = [{"model": n, "batch_size": 256, "throughput": t} for n, t in (("base", 1.0), ("small", 2.0),
                                                                              ("tiny", 9.0))]
    assert choose_served(rows, latency, 256, 0.02) == "small"
    assert choose_served(rows, latency, 256, 0.10) == "tiny"


def test_a_directory_holding_another_pipeline_is_refused(tmp_path):
    identity = {"data": {"builtin": "tiny"}, "config": {"training": {"num_epochs": 2}}}
    _claim(tmp_path / "p", identity)
    _claim(tmp_path / "p", identity)  # the same job: continued
    with pytest.raises(InputError, match="its config.training.num_epochs differ"):
        _claim(tmp_path / "p", {**identity, "config": {"training": {"num_epochs": 3}}})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    with pytest.raises(InputError, match="holds no pipeline.json"):  # someone else's directory
        _claim(tmp_path / "other", identity)


def test_the_facades_check_their_arguments(tiny_model_config):
    from hamnet_jax.optimization import create_comprehensive_optimizer, optimize_hamnet_pipeline
    from hamnet_jax.optimization.nas import HAMNetNAS
    from hamnet_jax.optimization.pruning_quantization import HAMNetOptimizer

    with pytest.raises(InputError, match="val_loader"):
        optimize_hamnet_pipeline(train_loader="a.parquet", val_loader="b.parquet")
    with pytest.raises(InputError, match="enable_nass"):
        optimize_hamnet_pipeline(optimization_config={"enable_nass": True})
    with pytest.raises(InputError, match="data file"):
        optimize_hamnet_pipeline(train_loader=[1, 2, 3])
    optimizers = create_comprehensive_optimizer(tiny_model_config, enable_nas=True, enable_pruning=True,
                                                enable_distillation=True)
    assert sorted(optimizers) == ["distillation", "nas", "pruning"]
    assert isinstance(optimizers["nas"], HAMNetNAS) and isinstance(optimizers["pruning"], HAMNetOptimizer)
    assert create_comprehensive_optimizer(tiny_model_config) == {}


def _pipeline(out: Path, data: Path | None, env: dict[str, str], timeout: float,
              extra: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run the tiny pipeline to its end (or its kill point): (exit status, its output). The
    output goes through a file, not a pipe: a leftover child could hold a pipe open. It runs
    in `out`'s parent folder (what it writes relative to its working directory, such as a
    SQLite MLflow store's artifacts, stays there)."""
    args = [sys.executable, "-m", "hamnet_jax.cli", "pipeline", "--preset", "tiny", "--out", str(out), "--quiet",
            *extra]
    if data is not None:
        args += ["--data", str(data)]
    log = out.parent / f"{out.name}.{len(list(out.parent.glob(out.name + '.*.log')))}.log"
    with open(log, "w") as f:
        code = subprocess.run(args, env={**os.environ, **env}, stdout=f, stderr=subprocess.STDOUT,
                              timeout=timeout, cwd=out.parent).returncode
    return code, log.read_text()


def _events(out: Path) -> list[dict]:
    path = out / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def killed_and_rerun(out: Path, data: Path | None, env: dict[str, str], kill_at: str, timeout: float) -> str:
    """Run the tiny pipeline until it SIGKILLs itself at the named kill point `kill_at`
    (`HAMNET_KILL_AT`), rerun the same command to the end; returns the rerun's output."""
    code, output = _pipeline(out, data, {**env, "HAMNET_KILL_AT": kill_at}, timeout)
    assert code == -signal.SIGKILL, output[-3000:]
    lines = output.splitlines()
    killed = lines.index(f"HAMNET_KILL_AT: killed at {kill_at}@1")
    # (after the kill: multiprocessing's resource tracker may report the semaphores it cleans up)
    assert_only_own_lines(lines[:killed])
    code, output = _pipeline(out, data, env, timeout)
    assert code == 0, output[-3000:]
    assert_only_own_lines(output.splitlines())
    return output


def assert_only_own_lines(lines: list[str]) -> None:
    """A quiet pipeline at the default log level prints its own stage lines and nothing of the
    libraries it runs (XLA flag warnings, nevergrad's, ONNX Runtime's)."""
    foreign = [line for line in lines if line and not line.startswith("pipeline")]
    assert not foreign, foreign[:10]


FEW_STAGES = {"HAMNET_ENABLE_NAS": "false", "HAMNET_ENABLE_HYPERPARAMETER_OPT": "false",
              "HAMNET_ENABLE_DISTILLATION": "false", "HAMNET_ENABLE_PRUNING": "false",
              "HAMNET_ENABLE_QUANTIZATION": "true", "HAMNET_ENABLE_MONITORING": "false"}


@pytest.fixture(scope="module")
def resumed_pipeline(tiny_cohort, tiny_run, tmp_path_factory) -> tuple[Path, str]:
    """The tiny preset with the stages that do not search or fine-tune (baseline, quantize,
    export, bench, repository) on the tiny cohort, killed in the quantize stage and rerun.
    (`tiny_run` first: the baseline is the same model, so its programs are compiled.)"""
    out = tmp_path_factory.mktemp("pipeline") / "p"
    output = killed_and_rerun(out, tiny_cohort[0], FEW_STAGES, "quantize/pipeline.stage_started", timeout=600)
    return out, output


def test_a_killed_pipeline_finishes_without_repeating_a_finished_stage(resumed_pipeline):
    out, output = resumed_pipeline
    events = _events(out)
    finished = [e["stage"] for e in events if e["event"] == "done"]
    assert finished == ["baseline", "quantize", "export", "bench", "repository"]  # each once, in order
    starts = [e["stage"] for e in events if e["event"] == "start"]
    assert starts.count("quantize") == 2 and starts.count("baseline") == 1
    assert "baseline: done earlier" in output
    assert "serve it with: hamnet serve --repository" in output


def test_the_report_is_regenerated_from_the_stage_files(resumed_pipeline):
    from hamnet_jax.pipeline import write_report

    out, _ = resumed_pipeline
    written = (out / "report.md").read_text()
    table = json.loads((out / "report.json").read_text())["table"]
    for name in ("report.md", "report.json", "latency.png", "accuracy_vs_size.png"):
        (out / name).unlink()
    again = write_report(out)
    assert (out / "report.md").read_text() == written
    assert again["table"] == table
    assert (out / "latency.png").stat().st_size > 0 and (out / "accuracy_vs_size.png").stat().st_size > 0
    # every figure is the benchmark file's
    bench = json.loads((out / "bench" / "results.json").read_text())
    largest = max(bench["settings"]["batch_sizes"])
    assert [r["technique"] for r in table] == ["Baseline HAMNet", "+ Quantization (INT8)",
                                               f"+ All (served: {bench['served']})"]
    for row in table:
        model = next(m for m in bench["models"] if m["name"] == row["model"])
        timed = next(r for r in bench["latency"] if r["model"] == row["model"] and r["batch_size"] == largest)
        assert row["throughput"] == timed["throughput"] and row["mae"] == model["accuracy"]["mae"]
        assert row["size_mb"] == model["size_bytes"] / 1e6
        assert f"{row['mae']:.3f}" in written and f"{row['throughput']:,.0f}" in written
    assert table[-1]["speedup"] == pytest.approx(table[-1]["throughput"] / table[0]["throughput"])


def test_the_repository_serves_the_chosen_model(resumed_pipeline, tiny_cohort):
    from hamnet_jax.bench.suite import run_test_split
    from hamnet_jax.inference.raw_inputs import cohort_to_raw
    from hamnet_jax.serving.repository import Repository

    out, _ = resumed_pipeline
    stage = json.loads((out / "repository" / "stage.json").read_text())["outputs"]
    bench = json.loads((out / "bench" / "results.json").read_text())
    served = next(m for m in bench["models"] if m["name"] == bench["served"])
    assert f"{stage['options']['backend']}/{stage['options']['precision_mode']}" == served["backend"]
    version = out / "repository" / "hamnet" / "1"
    assert not any(p.is_symlink() for p in version.rglob("*")) and not (version / "checkpoints").exists()
    repository = Repository(out / "repository")
    model = repository.load("hamnet")[0]
    try:
        test = run_test_split(Path(stage["run"]), tiny_cohort[0])
        answer = model.predictor.predict({k: v[:8] for k, v in cohort_to_raw(test, model.raw.spec).items()})
    finally:
        model.close()
    # the copied repository answers as the stage's own check of it did
    mae = float(np.abs(np.asarray(answer["prediction"], np.float64) - test.targets[:8]).mean())
    assert stage["check"]["subjects"] == 8 and mae == pytest.approx(stage["check"]["mae"], rel=1e-5)


def test_the_facade_continues_a_finished_pipeline_and_returns_its_served_model(resumed_pipeline, tiny_cohort):
    from hamnet_jax.bench.suite import run_test_split
    from hamnet_jax.inference.raw_inputs import cohort_to_raw
    from hamnet_jax.optimization import optimize_hamnet_pipeline

    out, _ = resumed_pipeline
    switches = {"enable_" + k[len("HAMNET_ENABLE_"):].lower(): v == "true" for k, v in FEW_STAGES.items()}
    results = optimize_hamnet_pipeline(train_loader=tiny_cohort[0], optimization_config=switches, out=out,
                                       preset="tiny")
    assert results["summary"]["speedup"] == json.loads((out / "report.json").read_text())["summary"]["speedup"]
    model = results["optimized_model"]
    stage = json.loads((out / "repository" / "stage.json").read_text())["outputs"]
    assert str(model.run_dir) == stage["run"] and model.options == stage["options"]
    test = run_test_split(model.run_dir, tiny_cohort[0])
    answer = model.predict({k: v[:8] for k, v in cohort_to_raw(test, model.predictor.spec).items()})
    mae = float(np.abs(np.asarray(answer["prediction"], np.float64) - test.targets[:8]).mean())
    assert mae == pytest.approx(stage["check"]["mae"], rel=1e-5)
    with pytest.raises(InputError, match="config.optimization.enable_nas differ"):  # other switches: not this pipeline
        optimize_hamnet_pipeline(train_loader=tiny_cohort[0], optimization_config={**switches, "enable_nas": True},
                                 out=out, preset="tiny")


def test_mlflow_gets_a_run_per_stage_and_the_served_model_registered(resumed_pipeline, tiny_cohort, tmp_path):
    """Rerun on the finished pipeline with --mlflow-uri: a parent run, one child per stage,
    and the served model registered as ONNX, which MLflow loads back and predicts with (a
    local SQLite store with its model registry; the tracking server: tests/tracking/)."""
    mlflow = pytest.importorskip("mlflow")
    import onnxruntime as ort
    from mlflow.tracking import MlflowClient

    from hamnet_jax.inference.raw_inputs import random_raw
    from hamnet_jax.inference.raw_model import RawModel
    from hamnet_jax.runs.run_dir import load_run

    out, _ = resumed_pipeline
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, output = _pipeline(out, tiny_cohort[0], FEW_STAGES, 600, ("--mlflow-uri", mlflow_uri))
    assert code == 0, output[-3000:]
    client = MlflowClient(mlflow_uri)
    parent = client.get_run(json.loads((out / "mlflow.json").read_text())["run_id"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    stages = {e["stage"] for e in _events(out) if e["event"] == "done"}
    assert sorted(c.info.run_name for c in children) == sorted(stages)
    bench = next(c for c in children if c.info.run_name == "bench")
    assert bench.data.metrics["seconds"] > 0 and "stage.json" in {a.path for a in client.list_artifacts(
        bench.info.run_id)}
    assert "summary/speedup" in parent.data.metrics and "report.md" in {
        a.path for a in client.list_artifacts(parent.info.run_id)}
    version = parent.data.tags["hamnet.registered_version"]
    assert f"registered as hamnet version {version}" in output
    mlflow.set_tracking_uri(mlflow_uri)
    model = mlflow.pyfunc.load_model(f"models:/hamnet/{version}")
    served = out / "repository" / "hamnet" / "1"
    raw = RawModel.from_run(load_run(served), 0)
    request = random_raw(raw.spec, raw.preprocessor, 5, seed=2)
    graph = served / "model.onnx"
    if not graph.exists():  # served by JAX: the registered graph is the run's fp32 raw-input export
        from hamnet_jax.export.onnx_export import export_run_onnx

        graph = tmp_path / "model.onnx"
        export_run_onnx(raw, graph)
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    want = dict(zip(names, session.run(None, request), strict=True))
    got = model.predict(request)
    np.testing.assert_allclose(np.asarray(got["prediction"]), want["prediction"], atol=1e-5)


@pytest.mark.slow
def test_the_tiny_preset_runs_every_stage_and_resumes_a_killed_search(tmp_path):
    out = tmp_path / "p"
    study_log = out / "nas" / "study" / "events.jsonl"
    # killed as the study logs its first finished trial job: the study is continued, not restarted
    killed_and_rerun(out, None, {}, "nas/search.trial_done", timeout=1500)
    assert '"done"' in study_log.read_text()
    jobs = [json.loads(line) for line in study_log.read_text().splitlines()]
    done_jobs = [(e["trial"], e["rung"]) for e in jobs if e["event"] == "done"]
    assert len(done_jobs) == len(set(done_jobs))  # no trial job of the killed study ran twice
    events = _events(out)
    finished = [e["stage"] for e in events if e["event"] == "done"]
    assert finished == ["cohort", "baseline", "nas", "hpo", "train", "distill", "prune", "quantize", "export",
                        "bench", "repository", "monitoring"]
    report = json.loads((out / "report.json").read_text())
    assert [r["technique"] for r in report["table"]][:5] == [
        "Baseline HAMNet", "+ NAS", "+ Knowledge Distill.", "+ Pruning", "+ Quantization (INT8)"]
    assert (out / "pareto_front.png").exists() and (out / "monitoring" / "alerts.yml").exists()
    nas = json.loads((out / "nas" / "stage.json").read_text())["outputs"]
    assert nas["trials"] == 2 and nas["chosen"]["config"]
    distill = json.loads((out / "distill" / "stage.json").read_text())["outputs"]
    assert distill["student"].startswith("the searched model")
    prune = json.loads((out / "prune" / "stage.json").read_text())["outputs"]
    assert prune["teacher_epochs"] == 1 and prune["run"].endswith("prune/taught")


def test_the_baseline_teaches_the_pruned_model_after_its_fine_tuning(tiny_cohort, tiny_run, tmp_path):
    """`pipeline.prune_teacher_epochs`: the prune stage's model is the pruned one (same
    compacted architecture) trained further by distillation from the baseline; 0 keeps the
    pruned model as fine-tuned."""
    from hamnet_jax.pipeline.stages import Context, stage_prune
    from hamnet_jax.runs.run_dir import load_run

    data, schema = tiny_cohort
    sections = {**TINY_CONFIG,
                "pruning": {"method": "structured", "target_sparsity": 0.5, "finetune_epochs": 1},
                "distillation": {"batch_size": 16}}  # (several steps: the first one's warm-up rate is 0)
    done = {"baseline": {"run": str(tiny_run)}}
    taught_ctx = Context(tmp_path / "taught", data, schema,
                         load_config(None, {}, {**sections, "pipeline": {"prune_teacher_epochs": 1}}), progress=False)
    taught = stage_prune(taught_ctx, done)
    assert Path(taught["run"]) == tmp_path / "taught" / "prune" / "taught"
    assert taught["teacher"] == str(tiny_run) and taught["teacher_epochs"] == 1
    pruned_run, taught_run = load_run(taught["pruned"]["run"]), load_run(taught["run"])
    assert taught_run.model_config == pruned_run.model_config  # the compacted architecture, kept
    assert pruned_run.model_config != load_run(tiny_run).model_config
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(pruned_run.params),
                                                      jax.tree_util.tree_leaves(taught_run.params), strict=True)]
    assert any(moved)  # trained further
    assert set(taught["test"]) >= {"mae", "coverage_90"}

    # 0 keeps the pruned model: the same stage directory, so its finished pruned run is continued, not redone
    plain_ctx = Context(tmp_path / "taught", data, schema,
                        load_config(None, {}, {**sections, "pipeline": {"prune_teacher_epochs": 0}}), progress=False)
    plain = stage_prune(plain_ctx, done)
    assert Path(plain["run"]) == tmp_path / "taught" / "prune" / "run" and "teacher" not in plain
    assert plain["test"] == taught["pruned"]["test"]
