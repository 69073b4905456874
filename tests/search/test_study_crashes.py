"""A study survives being killed: it resumes losing and repeating no trial, a crash between a
new record and its start proposes the same points, and its worker processes die
with it. Every kill happens at a named point, never after a sleep."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("nevergrad")

from hamnet_jax.io_atomic import AppendLog  # noqa: E402
from hamnet_jax.kill_points import kill_point  # noqa: E402
from hamnet_jax.search.engine import Objective, run_study  # noqa: E402
from hamnet_jax.search.proposers import Proposer  # noqa: E402
from hamnet_jax.search.schedulers import ASHA, FullBudget  # noqa: E402
from hamnet_jax.search.space import Choice, Float, SearchSpace  # noqa: E402
from hamnet_jax.search.store import open_study  # noqa: E402

from .test_search import quadratic_trial  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def logged_trial(config, budget, run_dir, trial):
    """A trial for the kill-and-resume test: logs its start and end; between them is the named
    kill point the test's first process dies at (its 4th job)."""
    log = Path(os.environ["HAMNET_TEST_LOG"])
    with open(log, "a") as f:
        f.write(json.dumps({"start": [trial, budget]}) + "\n")
    kill_point("test.trial_running")
    with open(log, "a") as f:
        f.write(json.dumps({"end": [trial, budget]}) + "\n")
    return {"loss": (config["x"] - 0.3) ** 2 + 1.0 / budget}


def run_small_study(root: str, resume: bool) -> None:
    space = SearchSpace({"x": Float(0.0, 1.0)})
    store = open_study(root, {"study": "kill-resume", "seed": 0}, resume=resume)
    run_study(store, space, [Objective("loss")], ASHA(1, 9, max_trials=9, eta=3),
              Proposer(space, "random", budget=9, seed=0), logged_trial)


def test_a_killed_study_resumes_losing_and_repeating_no_trial(tmp_path, monkeypatch):
    log = tmp_path / "executions.jsonl"
    env = {**os.environ, "HAMNET_TEST_LOG": str(log), "PYTHONPATH": str(ROOT),
           "HAMNET_KILL_AT": "test.trial_running@4"}  # killed in the middle of its fourth job
    code = ("from tests.search.test_study_crashes import run_small_study; "
            f"run_small_study({str(tmp_path / 'study')!r}, False)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    monkeypatch.setenv("HAMNET_TEST_LOG", str(log))
    run_small_study(str(tmp_path / "study"), True)
    events = [json.loads(x) for x in log.read_text().splitlines()]
    ends = [tuple(e["end"]) for e in events if "end" in e]
    starts = [tuple(e["start"]) for e in events if "start" in e]
    assert len(ends) == len(set(ends))  # no job completed twice
    assert set(starts) == set(ends)  # every job started was completed (the killed one again)
    assert len(starts) == len(ends) + 1  # exactly one job ran twice: the one killed mid-way
    records = {int(p.stem): json.loads(p.read_text()) for p in (tmp_path / "study" / "trials").glob("*.json")}
    assert len(records) == 9 and all(r["status"] == "done" for r in records.values())


def crash_at_start(monkeypatch, n, study, before_crash=lambda log, event: None) -> None:
    """Run `study()` until its `n`-th start event, where it crashes (KeyboardInterrupt) after
    `before_crash(log, event)` and before the event is appended."""
    real, starts = AppendLog.append, []

    def crashing(self, event):
        if event["event"] == "start":
            starts.append(event["trial"])
            if len(starts) == n:
                before_crash(self, event)
                raise KeyboardInterrupt
        real(self, event)

    monkeypatch.setattr(AppendLog, "append", crashing)
    with pytest.raises(KeyboardInterrupt):
        study()
    monkeypatch.setattr(AppendLog, "append", real)


@pytest.mark.parametrize("strategy", ["random", "cma"])
def test_a_resumed_study_rebuilds_its_proposer_from_the_log(tmp_path, monkeypatch, strategy):
    """No proposer state is stored: the resumed study replays its asks and tells from
    events.jsonl, so a model-based proposer (CMA, told after every trial) proposes what an
    uninterrupted study would. The crash comes between a new trial's record and its start
    event (the record's point is asked again, checked), after four tells."""
    space = SearchSpace({"x": Float(0.0, 1.0), "kind": Choice(["a", "b"])})

    def run(root, resume):
        store = open_study(root, {"study": "crash"}, resume=resume)
        return run_study(store, space, [Objective("loss")], FullBudget(1, 8), Proposer(space, strategy, 8, seed=4),
                         quadratic_trial)

    clean = run(tmp_path / "clean", False)
    crash_at_start(monkeypatch, 5, lambda: run(tmp_path / "crashed", False))  # trial 4 recorded, its start never logged
    assert len(list((tmp_path / "crashed" / "trials").glob("*.json"))) == 5
    resumed = run(tmp_path / "crashed", True)
    assert [r.raw for _, r in sorted(resumed.items())] == [r.raw for _, r in sorted(clean.items())]
    assert all(len(r.results) == 1 for r in resumed.values())  # trial 4, recorded but never begun, ran once
    stored = {p.suffix for p in (tmp_path / "crashed").rglob("*") if p.is_file()}
    assert stored == {".json", ".jsonl"}  # no pickle or other executable state in the study directory


def run_cma_study(root: str, resume: bool) -> None:
    """An ASHA study proposed by CMA (told after every lowest-rung result), for the kill tests."""
    space = SearchSpace({"x": Float(0.0, 1.0), "kind": Choice(["a", "b"])})
    store = open_study(root, {"study": "kill-points", "seed": 2}, resume=resume)
    run_study(store, space, [Objective("loss")], ASHA(1, 9, max_trials=9, eta=3),
              Proposer(space, "cma", budget=9, seed=2), quadratic_trial)


def final_records(root: Path) -> dict:
    """The study's trial records without their wall times: what a rerun must reproduce."""
    records = {}
    for path in sorted((root / "trials").glob("*.json")):
        record = json.loads(path.read_text())
        record.pop("seconds")
        records[path.name] = record
    return records


@pytest.mark.parametrize("point", ["search.trial_started@7", "search.trial_done@2"])
def test_a_study_killed_at_each_point_ends_with_the_same_records(tmp_path, point):
    """SIGKILL at each of the engine's kill points, then `--resume`: every trial record equals
    an uninterrupted study's (the trials are deterministic, so exactly)."""
    def study(root, resume, kill=None):
        code = f"from tests.search.test_study_crashes import run_cma_study; run_cma_study({str(root)!r}, {resume})"
        env = {**os.environ, "PYTHONPATH": str(ROOT)} | ({"HAMNET_KILL_AT": kill} if kill else {})
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)

    clean = study(tmp_path / "clean", False)
    assert clean.returncode == 0, clean.stderr
    killed = study(tmp_path / "killed", False, point)
    assert killed.returncode == -signal.SIGKILL and f"killed at {point}" in killed.stderr, killed.stderr
    resumed = study(tmp_path / "killed", True)
    assert resumed.returncode == 0, resumed.stderr
    assert final_records(tmp_path / "killed") == final_records(tmp_path / "clean")
    assert len(final_records(tmp_path / "clean")) == 9


def hold_and_wait(alive: str, ready: str) -> None:
    """A trial that holds `alive` open for writing for as long as its process lives, says so
    through `ready`, and never finishes by itself."""
    with open(alive, "w"), open(ready, "w") as f:  # (`alive` closes only when the process ends)
        f.write(str(os.getpid()))
        f.close()
        threading.Event().wait()


def test_a_killed_study_takes_its_worker_processes_with_it(tmp_path):
    """SIGKILL of the study's process ends its trial workers (they would go on training and
    hold its output pipe). Two FIFOs order it without a sleep: the study kills itself once its
    worker says it is running, and the worker's end of `alive` reads as end-of-file here
    only when every process holding it, the worker included, is gone."""
    alive, ready = tmp_path / "alive", tmp_path / "ready"
    os.mkfifo(alive)
    os.mkfifo(ready)
    reader = os.open(alive, os.O_RDONLY | os.O_NONBLOCK)  # (before the worker opens it for writing)
    code = ("import os, signal; from hamnet_jax.search.executors import ProcessExecutor; "
            "from tests.search.test_study_crashes import hold_and_wait; "
            f"ex = ProcessExecutor(1); ex.submit(hold_and_wait, {str(alive)!r}, {str(ready)!r}); "
            f"print('worker', open({str(ready)!r}).read(), flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    with open(tmp_path / "out.txt", "w") as out:  # (a file: an orphan holding a pipe would hang the test)
        study = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=out, stderr=subprocess.STDOUT, timeout=600)
    assert study.returncode == -signal.SIGKILL, (tmp_path / "out.txt").read_text()
    assert (tmp_path / "out.txt").read_text().startswith("worker ")
    try:
        readable, _, _ = select.select([reader], [], [], 60)  # (a surviving worker: the deadline, a failure)
        assert readable and os.read(reader, 1) == b"", "the worker outlived the study's process"
    finally:
        os.close(reader)


def test_a_study_resumes_past_a_torn_event_line(tmp_path, monkeypatch, caplog):
    """A study killed mid-append leaves a torn last line in events.jsonl: reading skips it
    (and says so), the resumed study's first append cuts it, and the study ends with the
    records and event count of an uninterrupted one."""
    space = SearchSpace({"x": Float(0.0, 1.0), "kind": Choice(["a", "b"])})

    def run(root, resume):
        store = open_study(root, {"study": "torn"}, resume=resume)
        return run_study(store, space, [Objective("loss")], FullBudget(1, 6), Proposer(space, "random", 6, seed=6),
                         quadratic_trial)

    clean = run(tmp_path / "clean", False)

    def half_written(log, event):  # killed while writing trial 3's start
        with open(log.path, "a") as f:
            f.write(json.dumps(event)[:17])

    crash_at_start(monkeypatch, 4, lambda: run(tmp_path / "torn", False), half_written)
    log = AppendLog(tmp_path / "torn" / "events.jsonl")
    assert len(log.read()) == 6 and log.skipped == [7] and "skipped 1 unreadable line(s)" in caplog.text
    resumed = run(tmp_path / "torn", True)
    assert [r.raw for _, r in sorted(resumed.items())] == [r.raw for _, r in sorted(clean.items())]
    assert len(log.read()) == len(AppendLog(tmp_path / "clean" / "events.jsonl").read()) == 12
    assert log.skipped == []  # the torn tail was cut before the first new event
