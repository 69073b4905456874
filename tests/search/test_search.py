"""The search engine: spaces, Pareto ranking, proposers, the study store, resume, the HAMNet trial and CLI."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("nevergrad")

from hamnet_jax.errors import InputError  # noqa: E402
from hamnet_jax.search.engine import Objective, run_study  # noqa: E402
from hamnet_jax.search.pareto import fronts, select_best  # noqa: E402
from hamnet_jax.search.proposers import Proposer  # noqa: E402
from hamnet_jax.search.schedulers import ASHA, FullBudget  # noqa: E402
from hamnet_jax.search.space import Bool, Choice, Float, Int, SearchSpace, point_key  # noqa: E402
from hamnet_jax.search.store import open_study  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_space_checks_bounds_and_conditions():
    with pytest.raises(InputError, match="'lr': inverted bounds"):
        SearchSpace({"lr": Float(1e-2, 1e-4)})
    with pytest.raises(InputError, match="'lr': a log scale needs low > 0"):
        SearchSpace({"lr": Float(0.0, 1.0, log=True)})
    with pytest.raises(InputError, match="'width': empty range"):
        SearchSpace({"width": Float(2.0, 2.0)})
    with pytest.raises(InputError, match="'kind': a choice needs at least one option"):
        SearchSpace({"kind": Choice([])})
    with pytest.raises(InputError, match="'g': its condition names 'attn'"):
        SearchSpace({"g": Int(1, 4, when={"attn": "grouped"})})
    with pytest.raises(InputError, match="parameter 'x' .* unknown keys \\['hi'\\]"):
        SearchSpace.from_dict({"x": {"type": "int", "low": 1, "hi": 3}})
    space = SearchSpace.from_dict({"attn": {"type": "choice", "options": ["dense", "grouped"]},
                                   "g": {"type": "int", "low": 2, "high": 8, "when": {"attn": "grouped"}},
                                   "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                                   "ema": {"type": "bool"}})
    for _ in range(20):
        point = space.decode(space.parametrization().sample().value)
        assert ("g" in point) == (point["attn"] == "grouped") and 1e-4 <= point["lr"] <= 1e-2
        assert isinstance(point["ema"], bool) and ("g" not in point or 2 <= point["g"] <= 8)


def test_grid_visits_every_point_exactly_once(tmp_path):
    space = SearchSpace({"depth": Int(1, 3), "kind": Choice(["a", "b"]),
                         "rate": Float(0.1, 0.5, grid=(0.1, 0.5), when={"kind": "b"}), "flag": Bool()})
    grid = space.grid()
    assert len(grid) == 3 * (1 + 2) * 2 and len({point_key(p) for p in grid}) == len(grid)
    seen = []

    def trial(config, budget, run_dir, trial):
        seen.append(point_key(config))
        return {"loss": config["depth"]}

    store = open_study(tmp_path / "grid", {"kind": "grid"}, resume=False)
    proposer = Proposer(space, "grid", budget=len(grid))
    run_study(store, space, [Objective("loss")], FullBudget(1, len(grid)), proposer, trial)
    assert sorted(seen) == sorted(point_key(p) for p in grid)
    with pytest.raises(InputError, match="no point left after 18 trials"):
        run_study(open_study(tmp_path / "grid2", {"k": 1}, resume=False), space, [Objective("loss")],
                  FullBudget(1, len(grid) + 1), Proposer(space, "grid", budget=1), trial)


@pytest.mark.parametrize("strategy", ["random", "evolutionary", "differential", "bayesian", "cma", "ngopt"])
def test_every_proposer_is_seeded_and_takes_its_settings(strategy):
    space = SearchSpace({"x": Float(-1.0, 1.0), "n": Int(1, 5), "kind": Choice(["a", "b"])})

    def run(seed):
        proposer = Proposer(space, strategy, budget=12, seed=seed, population_size=6, mutation_rate=0.2,
                            crossover_rate=0.7)
        asked = []
        for _ in range(12):
            raw, config = proposer.ask()
            asked.append(config)
            proposer.tell(raw, [(config["x"] - 0.3) ** 2 + abs(config["n"] - 2) + (config["kind"] == "b")])
        return proposer, asked

    proposer, first = run(seed=4)
    assert run(seed=4)[1] == first and run(seed=5)[1] != first
    assert all(-1.0 <= c["x"] <= 1.0 and 1 <= c["n"] <= 5 and c["kind"] in ("a", "b") for c in first)
    if strategy in ("evolutionary", "differential"):  # the original population / crossover settings reach it
        settings = proposer.optimizer._config._config
        assert settings["popsize"] == 6
        assert settings["recombination_ratio" if strategy == "evolutionary" else "crossover"] == 0.7


def test_pareto_fronts_and_selection():
    points = [(0, 2), (1, 1), (2, 0), (1, 3), (2, 2), (3, 1), (3, 3)]
    assert fronts(points) == [[0, 1, 2], [3, 4, 5], [6]]
    assert select_best(points, 2) == [0, 2]  # the front cut by crowding: its two ends
    assert set(select_best(points, 4)) == {0, 1, 2, 3}  # then an end of the second front (tie: lower index)


def test_a_trial_epoch_budget_stops_the_study_and_a_resume_may_extend_it(tmp_path):
    space = SearchSpace({"x": Float(0.0, 1.0)})
    seen = []

    def trial(config, budget, run_dir, trial):
        seen.append((trial, budget))
        time.sleep(0.002)
        return {"f": config["x"] + 1.0 / budget}

    def run(budget):
        store = open_study(tmp_path / "s", {"kind": "budget"}, resume=(tmp_path / "s" / "study.json").exists())
        return run_study(store, space, [Objective("f")], ASHA(1, 9, max_trials=30, eta=3),
                         Proposer(space, "random", 30, seed=2), trial, max_trial_epochs=budget)

    first = run(12)
    spent = sum(max(r["budget"] for r in rec.results) for rec in first.values())
    assert spent <= 12 and len(seen) == len(set(seen))
    assert all(rec.seconds >= 0.002 * len(rec.results) for rec in first.values())  # timed around the trial
    more = run(40)
    spent_more = sum(max(r["budget"] for r in rec.results) for rec in more.values())
    assert 12 < spent_more <= 40 and len(seen) == len(set(seen))  # nothing repeated on extending
    assert set(first) <= set(more) and all(more[t].results[:len(first[t].results)] == first[t].results for t in first)
    with pytest.raises(InputError, match="max_trial_epochs must be at least 1"):
        run(0)


def test_a_study_directory_holds_one_study(tmp_path):
    open_study(tmp_path / "s", {"space": {"a": 1}, "seed": 0}, resume=False)
    with pytest.raises(InputError, match="already holds a study; pass --resume"):
        open_study(tmp_path / "s", {"space": {"a": 1}, "seed": 0}, resume=False)
    with pytest.raises(InputError, match="different study \\(its seed differ"):
        open_study(tmp_path / "s", {"space": {"a": 1}, "seed": 1}, resume=True)
    assert open_study(tmp_path / "s", {"space": {"a": 1}, "seed": 0}, resume=True).root == tmp_path / "s"


def test_a_missing_objective_metric_is_named(tmp_path):
    space = SearchSpace({"x": Int(0, 3)})
    with pytest.raises(InputError, match="objective 'val_mae' is not among the trial's metrics \\['loss'\\]"):
        run_study(open_study(tmp_path / "m", {"k": 1}, resume=False), space, [Objective("val_mae")],
                  FullBudget(1, 2), Proposer(space, "random", budget=2), lambda c, b, d, t: {"loss": 1.0})


def quadratic_trial(config, budget, run_dir, trial):
    """A picklable trial for executor tests."""
    return {"loss": (config["x"] - 0.3) ** 2 + (0.5 if config["kind"] == "b" else 0.0), "budget": budget}


def study_with(executor, root: Path) -> list:
    space = SearchSpace({"x": Float(0.0, 1.0), "kind": Choice(["a", "b"])})
    store = open_study(root, {"study": "executors", "seed": 3}, resume=False)
    records = run_study(store, space, [Objective("loss")], FullBudget(1, 6), Proposer(space, "random", 6, seed=3),
                        quadratic_trial, executor=executor)
    return sorted((point_key(r.config), r.results[-1]["losses"][0]) for r in records.values())


def test_two_local_workers_run_the_same_trials_as_one(tmp_path):
    from hamnet_jax.search.executors import ProcessExecutor, SerialExecutor

    serial = study_with(SerialExecutor(), tmp_path / "serial")
    pool = ProcessExecutor(2)
    try:
        parallel = study_with(pool, tmp_path / "parallel")
    finally:
        pool.shutdown()
    assert len(serial) == 6 and parallel == serial


def test_a_local_ray_instance_runs_the_same_trials(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[default]')")
    from hamnet_jax.search.executors import RayExecutor, SerialExecutor

    serial = study_with(SerialExecutor(), tmp_path / "serial")
    executor = RayExecutor(2, num_cpus=2, include_dashboard=False)
    try:
        assert study_with(executor, tmp_path / "ray") == serial
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_hamnet_trials_train_promote_from_checkpoints_and_measure(tiny_cohort, tmp_path):
    import functools

    from tests.conftest import TINY_CONFIG

    from hamnet_jax.search.hamnet_trial import hamnet_trial

    data, _ = tiny_cohort
    space = SearchSpace({"learning_rate": Float(1e-3, 4e-3, log=True), "embed_dim": Choice([16, 32])})
    trial = functools.partial(hamnet_trial, data=str(data), config=TINY_CONFIG, latency_reps=5, schedule_epochs=2)
    store = open_study(tmp_path / "study", {"study": "hamnet"}, resume=False)
    records = run_study(store, space, [Objective("val_mae"), Objective("latency_ms")], ASHA(1, 2, 3, eta=2),
                        Proposer(space, "random", 3, seed=0), trial)
    promoted = [r for r in records.values() if len(r.results) == 2]
    assert len(records) == 3 and len(promoted) >= 1
    history = (store.run_dir(promoted[0].trial) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in history] == [1, 2]  # continued from its 1-epoch checkpoint
    assert not (store.run_dir(promoted[0].trial) / "distilled_uncertainty.json").exists()  # a trial is never served
    # one schedule over the largest budget: the promoted trial trained as one run of 2 epochs at once
    trial(promoted[0].config, 2, tmp_path / "direct", -1)
    direct = (tmp_path / "direct" / "metrics.jsonl").read_text().splitlines()
    assert history == direct
    m = promoted[0].results[-1]["metrics"]
    assert m["epochs"] == 2 and m["params"] > 0 and m["latency_ms"] > 0 and m["flops"] > 0 and "test_mae" in m
    with pytest.raises(InputError, match="\\['depth'\\] are neither model keys"):
        hamnet_trial({"depth": 3}, 1, tmp_path / "bad", 0, data=str(data), config=TINY_CONFIG)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="counts the process's memory mappings (Linux)")
def test_trials_in_one_process_leave_no_compiled_programs_behind(tiny_cohort, tmp_path, monkeypatch):
    """Each trial's compiled programs hold memory mappings until JAX's caches drop them; a
    study process that kept them all hit vm.max_map_count after ~60 trials and crashed."""
    import jax
    from tests.conftest import TINY_CONFIG

    from hamnet_jax.search.hamnet_trial import hamnet_trial

    data, _ = tiny_cohort

    def trial(i: int) -> None:
        hamnet_trial({"learning_rate": 1e-3 * (i + 1), "batch_size": 16 * (i + 1)}, 1, tmp_path / str(i), i,
                     data=str(data), config=TINY_CONFIG, measure_speed=False)

    def mappings_left_by(i: int) -> int:
        before = sum(1 for _ in open("/proc/self/maps"))
        trial(i)
        return sum(1 for _ in open("/proc/self/maps")) - before

    trial(0)  # (the first trial's compilations include what every later one shares)
    cleared = mappings_left_by(1)
    monkeypatch.setattr(jax, "clear_caches", lambda: None)
    kept = mappings_left_by(2)
    assert cleared < 40 and kept > 3 * 40, (cleared, kept)  # (measured: 2 and 702)


def test_hamnet_search_names_bad_input(tiny_cohort, tmp_path, capsys):
    from hamnet_jax.cli import main

    data, _ = tiny_cohort
    space = tmp_path / "space.yaml"
    space.write_text("space:\n  learning_rate: {type: float, low: 0.01, high: 0.001, log: true}\n")
    assert main(["search", "hpo", "--data", str(data), "--out", str(tmp_path / "s1"), "--space", str(space)]) == 2
    assert "'learning_rate': inverted bounds [0.01, 0.001]" in capsys.readouterr().err
    assert main(["search", "nas", "--data", str(data), "--out", str(tmp_path / "s2"),
                 "--strategy", "reinforcement"]) == 2
    assert "strategy 'reinforcement' is not implemented" in capsys.readouterr().err
    assert main(["search", "hpo", "--data", str(data), "--out", str(tmp_path / "s3"),
                 "--objectives", "val_mae,latency"]) == 2
    assert "['latency'] not among the metrics a trial reports" in capsys.readouterr().err
    assert not (tmp_path / "s3").exists()  # refused before any study was created
    for flags, message in ((["--rungs", "1,4,4"], "rungs [1, 4, 4]: each budget must be larger than the one before"),
                           (["--rungs", "1,4", "--max-epochs", "9"], "the last the full budget (9)"),
                           (["--rungs", "2,4", "--min-epochs", "1"], "the first must be the smallest budget (1)"),
                           (["--rungs", "1,9", "--scheduler", "full"], "the full scheduler has no rungs"),
                           (["--rungs", "1,x"], "'1,x': expected whole epochs separated by commas")):
        with contextlib.suppress(SystemExit):  # argparse's own refusal exits
            assert main(["search", "hpo", "--data", str(data), "--out", str(tmp_path / "s4"), *flags]) == 2
        assert message in capsys.readouterr().err, flags
    assert not (tmp_path / "s4").exists()


def test_a_study_with_named_rungs_trains_there_and_keeps_them_in_its_identity(tiny_cohort, tmp_path, monkeypatch):
    import hamnet_jax.search.hamnet_trial as trial_module
    from hamnet_jax.config import load_config
    from hamnet_jax.search.space import SearchSpace as Space
    from hamnet_jax.search.study import StudyRequest, run_search

    seen = []

    def fake_trial(point, budget, run_dir, trial, **_):  # a trial's loss from its configuration and budget
        seen.append((trial, budget))
        return {"val_mae": point["x"] + 1.0 / budget, "epochs": budget}

    monkeypatch.setattr(trial_module, "hamnet_trial", fake_trial)
    data, _ = tiny_cohort
    request = StudyRequest(kind="hpo", data=str(data), out=str(tmp_path / "study"), space=Space({"x": Float(0, 1)}),
                           strategy="random", scheduler="sha", trials=9, eta=3, rungs=(2, 5, 7), best_run=False,
                           share_compilations=False)
    report = run_search(request, load_config(None))
    assert sorted({b for _, b in seen}) == [2, 5, 7] and len(seen) == 9 + 3 + 1 and report["full_budget"] == 7
    identity = json.loads((tmp_path / "study" / "study.json").read_text())
    assert (identity["rungs"], identity["min_epochs"], identity["max_epochs"]) == ([2, 5, 7], 2, 7)


@pytest.mark.slow
def test_hamnet_search_cli_runs_and_resumes(tiny_cohort, tiny_config_file, tmp_path, capsys):
    from hamnet_jax.cli import main

    data, _ = tiny_cohort
    args = ["search", "hpo", "--data", str(data), "--config", str(tiny_config_file), "--out",
            str(tmp_path / "study"), "--trials", "2", "--scheduler", "full", "--max-epochs", "1",
            "--objectives", "val_mae,latency_ms", "--strategy", "random", "--quiet"]
    # the first run in a fresh process, two trials at once in two worker processes, on a fresh
    # cache root: both workers ask for the cohort cache at once; it is built once, no trial fails
    fresh = {**os.environ, "HAMNET_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "hamnet_jax.cli", *args, "--workers", "2"], capture_output=True,
                         text=True, cwd=ROOT, env=fresh)
    assert run.returncode == 0, run.stderr[-3000:]
    study = tmp_path / "study"
    records = [json.loads(p.read_text()) for p in (study / "trials").glob("*.json")]
    assert [r["status"] for r in records] == ["done", "done"], [r["error"] for r in records]
    assert len([d for d in (tmp_path / "cache" / "cohorts").iterdir() if not d.name.startswith(".")]) == 1
    # its trials share compiled programs through the study's cache; the data stays in the shared cache
    assert any((study / "xla_cache").iterdir())
    assert not any(study.glob("**/data_cache")) and not any(study.glob("**/*.npy"))
    report = json.loads((study / "analysis.json").read_text())
    assert report["trials"] == 2 and report["pareto_front"] and "val_mae" in report["pareto_front"][0]["objectives"]
    best = report["best_run"]
    assert best["run_dir"] == str(study / "best") and best["trial"] == report["best"]["val_mae"]["trial"]
    # the best run is a run directory the other commands take as it is
    assert main(["evaluate", "--run", str(study / "best"), "--data", str(data), "--no-baselines"]) == 0
    assert main(["export", "--run", str(study / "best"), "--out", str(tmp_path / "best.onnx")]) == 0
    assert main(args) == 2 and "pass --resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0  # a finished study resumes to the same end, running nothing
    assert json.loads((study / "analysis.json").read_text())["trials"] == 2


def test_the_original_facades_search_a_plain_function(tmp_path):
    from hamnet_jax.optimization.hyperparameter_optimization import (
        HAMNetHyperparameterOptimizer, HyperparameterConfig, OptimizationStrategy)
    from hamnet_jax.optimization.nas import ArchitectureConfig, HAMNetNAS, SearchStrategy

    nas = HAMNetNAS(ArchitectureConfig(search_strategy=SearchStrategy.EVOLUTIONARY, min_layers=1, max_layers=4,
                                       population_size=4, generations=3, mutation_rate=0.1, crossover_rate=0.8),
                    study_dir=tmp_path / "nas")
    best = nas.search(lambda a: -abs(a.values["num_layers"] - 3) - abs(a.values["embed_dim"] - 64) / 64,
                      max_iterations=12)
    analysis = nas.analyze_search_results()
    assert analysis["num_evaluations"] == 12 and analysis["best_fitness"] == max(analysis["fitness_history"])
    assert set(analysis["parameter_importance"]) == set(nas.space.params)
    assert best.to_model_config(tier="base").num_layers == best.values["num_layers"]
    with pytest.raises(InputError, match="'reinforcement' is not implemented"):
        HAMNetNAS(ArchitectureConfig(search_strategy="reinforcement"))

    budgets = []

    def train_fn(model, hp):
        budgets.append(hp["num_epochs"])
        return {"val_loss": (hp["learning_rate"] - 1e-3) ** 2 * 1e6 + 1.0 / hp["num_epochs"]}

    hpo = HAMNetHyperparameterOptimizer(HyperparameterConfig(strategy=OptimizationStrategy.HYPERBAND,
                                                             max_epochs_per_trial=9), model="m")
    best_trial = hpo.optimize(train_fn)
    assert best_trial["budget"] == 9 and set(budgets) == {1, 3, 9}
    assert hpo.get_best_hyperparameters() == best_trial["hyperparameters"]


def test_every_built_in_space_point_is_a_valid_config():
    import dataclasses as dc

    from hamnet_jax.config.sections import TrainingConfig
    from hamnet_jax.models.config import HAMNetConfig
    from hamnet_jax.search.spaces import architecture_space, training_space

    arch, train = architecture_space(1, 4), training_space()
    for seed in range(40):
        point = arch.decode(arch.parametrization(seed).sample().value)
        HAMNetConfig.from_tier("standard", **point)  # raises InputError naming a bad field
        dc.replace(TrainingConfig(), **train.decode(train.parametrization(seed).sample().value))


def test_fast_compile_flags_reach_the_workers_and_are_refused_where_they_mislead():
    import os

    from hamnet_jax.search.executors import ProcessExecutor
    from hamnet_jax.search.fast_compile import LLVM_O0
    from hamnet_jax.search.study import StudyRequest

    executor = ProcessExecutor(2, {"XLA_FLAGS": LLVM_O0})
    try:
        assert executor.submit(os.getenv, "XLA_FLAGS").result(timeout=120) == LLVM_O0
    finally:
        executor.shutdown()
    for request in (dict(workers=1), dict(workers=2, objectives=("val_mae", "latency_ms")),
                    dict(workers=2, max_latency_ms=5.0)):
        with pytest.raises(InputError, match="fast_compile"):
            StudyRequest(kind="nas", data="x.parquet", out="unused", fast_compile=True, **request)
    StudyRequest(kind="nas", data="x.parquet", out="unused", fast_compile=True, workers=2)


def test_the_fast_compile_flags_start_jax_silently():
    """Only flags this jaxlib honours: one it no longer does (XLA warns at every start) or does
    not know (XLA aborts) is left out, so workers print nothing of their own."""
    from hamnet_jax.search.fast_compile import LLVM_O0, fast_compile_flags, xla_flag_honoured

    assert not xla_flag_honoured("--xla_no_such_flag=1")
    flags = fast_compile_flags()
    assert flags.startswith(LLVM_O0)
    probe = subprocess.run([sys.executable, "-c", "import jax.numpy as jnp; print(jnp.ones(3).sum())"],
                           env={**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"},
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and probe.stdout.strip() == "3.0"
    assert probe.stderr == ""
