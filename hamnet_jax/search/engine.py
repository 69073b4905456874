"""The search engine: a proposer proposes, a scheduler decides budgets, an executor runs
trials, the study store keeps everything.

    result = run_study(store, space, objectives, scheduler, proposer, trial_fn, workers=2)

`trial_fn(config, budget, run_dir, trial) -> metrics` trains trial `trial`'s `config` up
to `budget` epochs in `run_dir` (resuming from the checkpoints already there: a promoted
trial continues where its lower rung stopped) and returns its metrics (`summary.json`'s,
plus anything measured). Objectives read metrics by name; a missing one is an error
naming it and the metrics there are. Constraints (`max_params`, ...) turn a violating
trial's losses to +inf: it is dominated by every feasible trial and never promoted.

Crash safety: besides the per-trial records, `events.jsonl` logs every job start and
completion in order (appended and fsynced; a torn last line is dropped). Resuming
replays the log through a fresh scheduler, which therefore makes the same decisions,
reruns the jobs that had started but not finished (from their checkpoints), and goes on:
no trial is lost, none is started twice. The proposer is restored from its pickle.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import AppendLog
from hamnet_jax.kill_points import kill_point
from hamnet_jax.search.executors import Executor, SerialExecutor
from hamnet_jax.search.proposers import Proposer
from hamnet_jax.search.space import SearchSpace
from hamnet_jax.search.store import StudyStore, TrialRecord, open_study

TrialFn = Callable[[dict[str, Any], int, Path, int], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Objective:
    metric: str
    direction: str = "min"  # or "max"

    def __post_init__(self) -> None:
        if self.direction not in ("min", "max"):
            raise InputError(f"objective {self.metric!r}: direction must be min or max, got {self.direction!r}")

    def loss(self, metrics: dict[str, Any]) -> float:
        if self.metric not in metrics:
            raise InputError(f"objective {self.metric!r} is not among the trial's metrics {sorted(metrics)}")
        value = float(metrics[self.metric])
        return value if self.direction == "min" else -value


@dataclasses.dataclass(frozen=True)
class Constraint:
    metric: str
    maximum: float

    def holds(self, metrics: dict[str, Any]) -> bool:
        if self.metric not in metrics:
            raise InputError(f"constraint on {self.metric!r}: not among the trial's metrics {sorted(metrics)}")
        return float(metrics[self.metric]) <= self.maximum


def losses_of(metrics: dict[str, Any], objectives: Sequence[Objective],
              constraints: Sequence[Constraint]) -> list[float]:
    if not all(c.holds(metrics) for c in constraints):
        return [float("inf")] * len(objectives)
    return [o.loss(metrics) for o in objectives]


def catch_up(proposer: Proposer, records: dict[int, TrialRecord]) -> None:
    """A crash between saving a new trial's record and the proposer's pickle leaves the
    pickle one ask behind: ask again (the same draws, checked) until it has proposed every
    recorded trial, so a resumed study proposes what an uninterrupted one would."""
    if not hasattr(proposer, "asked"):  # a pickle from before the counter existed
        proposer.asked = len(records)
    while proposer.asked < len(records):
        expected = records[proposer.asked]
        asked = proposer.ask()
        if asked is None or asked[0] != expected.raw:
            raise InputError(f"study: the saved proposer does not reproduce trial {expected.trial}'s configuration; "
                             "was the study changed?")


def run_study(store: StudyStore, space: SearchSpace, objectives: Sequence[Objective], scheduler: Any,
              proposer: Proposer, trial_fn: TrialFn, constraints: Sequence[Constraint] = (),
              executor: Executor | None = None, progress: Callable[[TrialRecord], None] | None = None,
              max_trial_epochs: int | None = None) -> dict[int, TrialRecord]:
    """Run (or resume) the study to the scheduler's end, or until the next job would take
    the epochs trained over `max_trial_epochs` (a promoted trial costs only the epochs it
    adds); returns the trial records."""
    if max_trial_epochs is not None and max_trial_epochs < 1:
        raise InputError(f"budget: max_trial_epochs must be at least 1, got {max_trial_epochs}")
    if not objectives:
        raise InputError("a study needs at least one objective")
    executor = executor or SerialExecutor()
    records = store.load_all()
    log = AppendLog(store.root / "events.jsonl")
    proposer_file = store.root / "proposer.pkl"
    if proposer_file.exists():
        proposer = Proposer.load(proposer_file)
    catch_up(proposer, records)

    # replay the log: the scheduler makes the decisions it made before the interruption
    unfinished: dict[tuple[int, int], Any] = {}
    trained: dict[int, int] = {}  # epochs each trial has been asked to reach (keys: the trials begun)
    for event in log.read():
        if event["event"] == "start":
            trained[event["trial"]] = max(trained.get(event["trial"], 0), event["budget"])
            job = scheduler.next_job(event["trial"])
            if job is None or (job.trial, job.rung) != (event["trial"], event["rung"]):
                raise InputError(f"study {store.root}: its event log does not replay (expected trial "
                                 f"{event['trial']} rung {event['rung']}, the scheduler gives {job}); "
                                 "was the study changed?")
            unfinished[(job.trial, job.rung)] = job
        else:
            job = unfinished.pop((event["trial"], event["rung"]))
            scheduler.report(job, event["losses"])

    running: dict[Future, Any] = {}

    def finish(job: Any, record: TrialRecord, metrics: dict[str, Any], seconds: float) -> None:
        losses = losses_of(metrics, objectives, constraints)
        record.results.append({"budget": job.budget, "rung": job.rung, "metrics": metrics, "losses": losses})
        record.status, record.seconds = "done", record.seconds + seconds
        store.save(record)
        log.append({"event": "done", "trial": job.trial, "rung": job.rung, "losses": losses})
        kill_point("search.trial_done")
        scheduler.report(job, losses)
        if job.rung == 0:  # every trial has a lowest-rung result: comparable for the proposer
            proposer.tell(record.raw, losses)
            proposer.save(proposer_file)
        if progress is not None:
            progress(record)

    def launch(job: Any) -> None:
        record = records[job.trial]
        done = next((r for r in record.results if r["rung"] == job.rung), None)
        if done is not None:  # finished before the interruption, its completion not yet logged
            losses = [float("inf") if x is None else x for x in done["losses"]]  # (stored JSON has no inf)
            log.append({"event": "done", "trial": job.trial, "rung": job.rung, "losses": losses})
            scheduler.report(job, losses)
            return
        record.status, record.budget, record.rung = "running", job.budget, job.rung
        store.save(record)
        kill_point("search.trial_started")
        started = time.perf_counter()  # before submit: a serial executor runs the trial inside it
        future = executor.submit(trial_fn, dict(record.config), job.budget, store.run_dir(job.trial), job.trial)
        running[future] = (job, started)

    for job in unfinished.values():
        launch(job)
    exhausted = False
    while True:
        while len(running) < executor.workers and not exhausted:
            # a new trial's id: the trials begun so far (a record saved just before a crash, never
            # begun, is that trial: its configuration is reused, not asked for again)
            job = scheduler.next_job(len(trained))
            if job is None:
                break
            cost = job.budget - trained.get(job.trial, 0)
            if max_trial_epochs is not None and sum(trained.values()) + cost > max_trial_epochs:
                exhausted = True  # (the scheduler is not asked again: its next answer would differ on resume)
                break
            trained[job.trial] = max(trained.get(job.trial, 0), job.budget)
            if job.new and job.trial not in records:
                asked = proposer.ask()
                if asked is None:
                    raise InputError(f"the {proposer.strategy} proposer has no point left after {len(records)} "
                                     f"trials (a grid of {proposer.size}); ask for at most that many trials")
                raw, config = asked
                records[job.trial] = TrialRecord(job.trial, config, raw=raw)
                store.save(records[job.trial])  # the record first, then the proposer: see `catch_up`
                proposer.save(proposer_file)
            log.append({"event": "start", "trial": job.trial, "rung": job.rung, "budget": job.budget})
            launch(job)
        if not running:
            break
        finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for future in finished:
            job, started = running.pop(future)
            record = records[job.trial]
            try:
                metrics = future.result()
            except InputError:
                raise
            except Exception as err:  # a failed trial is recorded and dominated; the study goes on
                record.status, record.error = "failed", f"{type(err).__name__}: {err}"
                store.save(record)
                log.append({"event": "done", "trial": job.trial, "rung": job.rung,
                            "losses": [float("inf")] * len(objectives)})
                scheduler.report(job, [float("inf")] * len(objectives))
                continue
            finish(job, record, metrics, time.perf_counter() - started)
    return records


def function_study(space: SearchSpace, objective: Objective, scheduler: Any, proposer: Proposer,
                   fn: Callable[[dict[str, Any], int], dict[str, Any]], root: str | Path | None = None,
                   identity: dict[str, Any] | None = None) -> dict[int, TrialRecord]:
    """A study over a plain function `fn(point, budget) -> metrics` (the facades' fitness
    and training functions), run in this process; kept in `root`, or in a temporary
    directory when None (then nothing survives the call but the returned records)."""

    def trial(point: dict[str, Any], budget: int, run_dir: Path, trial: int) -> dict[str, Any]:
        metrics = fn(point, budget)
        if not isinstance(metrics, dict):
            metrics = {objective.metric: metrics}
        return metrics

    ident = identity or {"space": space.describe(), "strategy": proposer.strategy}
    if root is not None:
        return run_study(open_study(root, ident, resume=(Path(root) / "study.json").exists()), space,
                         [objective], scheduler, proposer, trial)
    with tempfile.TemporaryDirectory(prefix="hamnet-study-") as tmp:
        return run_study(open_study(tmp, ident, resume=False), space, [objective], scheduler, proposer, trial)
