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
completion in order (appended and fsynced; a torn line is skipped and reported). Resuming
replays the log through a fresh scheduler and a fresh proposer, which therefore make the
same decisions and proposals (each start of a new trial is the proposer's ask, checked
against the trial's record; each completion marked `told` its tell), reruns the jobs that
had started but not finished (from their checkpoints), and goes on: no trial is lost,
none is started twice. Nothing is pickled: the study directory holds JSON only.
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


def ask_recorded(proposer: Proposer, record: TrialRecord) -> None:
    """Ask again for a recorded trial's point (replaying a study): the same seeded draws
    give the same point, checked, so a resumed study proposes what an uninterrupted one would."""
    asked = proposer.ask()
    if asked is None or asked[0] != record.raw:
        raise InputError(f"study: the proposer does not reproduce trial {record.trial}'s configuration; "
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
    study = _Study(store, objectives, constraints, scheduler, proposer, trial_fn,
                   executor or SerialExecutor(), progress, max_trial_epochs)
    for job in study.replay().values():
        study.launch(job)
    while True:
        study.launch_new_jobs()
        if not study.running:
            break
        finished, _ = wait(list(study.running), return_when=FIRST_COMPLETED)
        for future in finished:
            study.collect(future)
    return study.records


class _Study:
    """One run of a study: its records, event log, scheduler and proposer, and the jobs running."""

    def __init__(self, store: StudyStore, objectives: Sequence[Objective], constraints: Sequence[Constraint],
                 scheduler: Any, proposer: Proposer, trial_fn: TrialFn, executor: Executor,
                 progress: Callable[[TrialRecord], None] | None, max_trial_epochs: int | None) -> None:
        self.store, self.objectives, self.constraints = store, objectives, constraints
        self.scheduler, self.proposer = scheduler, proposer
        self.trial_fn, self.executor, self.progress = trial_fn, executor, progress
        self.max_trial_epochs = max_trial_epochs
        self.records = store.load_all()
        self.log = AppendLog(store.root / "events.jsonl")
        self.running: dict[Future, Any] = {}
        self.trained: dict[int, int] = {}  # epochs each trial has been asked to reach (keys: the trials begun)
        self.exhausted = False

    def replay(self) -> dict[tuple[int, int], Any]:
        """Replay the log: the scheduler and the proposer make the decisions they made before
        the interruption. Returns the jobs started and not finished then."""
        unfinished: dict[tuple[int, int], Any] = {}
        for event in self.log.read():
            if event["event"] == "start":
                if event["trial"] not in self.trained:  # a new trial: the proposer's ask
                    ask_recorded(self.proposer, self._record(event["trial"]))
                self.trained[event["trial"]] = max(self.trained.get(event["trial"], 0), event["budget"])
                job = self.scheduler.next_job(event["trial"])
                if job is None or (job.trial, job.rung) != (event["trial"], event["rung"]):
                    raise InputError(f"study {self.store.root}: its event log does not replay (expected trial "
                                     f"{event['trial']} rung {event['rung']}, the scheduler gives {job}); "
                                     "was the study changed?")
                unfinished[(job.trial, job.rung)] = job
            else:
                job = unfinished.pop((event["trial"], event["rung"]))
                self.scheduler.report(job, event["losses"])
                if event.get("told"):
                    self.proposer.tell(self._record(job.trial).raw, event["losses"])
        # a record saved just before a crash, its trial never begun: its ask happened after the log's end
        while self.proposer.asked < len(self.records):
            ask_recorded(self.proposer, self._record(self.proposer.asked))
        return unfinished

    def _record(self, trial: int) -> TrialRecord:
        if trial not in self.records:
            raise InputError(f"study {self.store.root}: events.jsonl names trial {trial}, which has no record in "
                             "trials/; the study directory is incomplete")
        return self.records[trial]

    def launch_new_jobs(self) -> None:
        """Start the scheduler's next jobs while a worker is free and the budget allows."""
        while len(self.running) < self.executor.workers and not self.exhausted:
            # a new trial's id: the trials begun so far (a record saved just before a crash, never
            # begun, is that trial: its configuration is reused, not asked for again)
            job = self.scheduler.next_job(len(self.trained))
            if job is None:
                break
            cost = job.budget - self.trained.get(job.trial, 0)
            if self.max_trial_epochs is not None and sum(self.trained.values()) + cost > self.max_trial_epochs:
                self.exhausted = True  # (the scheduler is not asked again: its next answer would differ on resume)
                break
            self.trained[job.trial] = max(self.trained.get(job.trial, 0), job.budget)
            if job.new and job.trial not in self.records:
                asked = self.proposer.ask()
                if asked is None:
                    raise InputError(f"the {self.proposer.strategy} proposer has no point left after "
                                     f"{len(self.records)} trials (a grid of {self.proposer.size}); ask for at "
                                     "most that many trials")
                raw, config = asked
                self.records[job.trial] = TrialRecord(job.trial, config, raw=raw)
                self.store.save(self.records[job.trial])
            self.log.append({"event": "start", "trial": job.trial, "rung": job.rung, "budget": job.budget})
            self.launch(job)

    def launch(self, job: Any) -> None:
        record = self.records[job.trial]
        done = next((r for r in record.results if r["rung"] == job.rung), None)
        if done is not None:  # finished before the interruption, its completion not yet logged
            losses = [float("inf") if x is None else x for x in done["losses"]]  # (stored JSON has no inf)
            self.complete(job, record, losses)
            return
        record.status, record.budget, record.rung = "running", job.budget, job.rung
        self.store.save(record)
        kill_point("search.trial_started")
        started = time.perf_counter()  # before submit: a serial executor runs the trial inside it
        future = self.executor.submit(self.trial_fn, dict(record.config), job.budget,
                                      self.store.run_dir(job.trial), job.trial)
        self.running[future] = (job, started)

    def collect(self, future: Future) -> None:
        """A finished job: its result recorded, or its failure (the study goes on)."""
        job, started = self.running.pop(future)
        record = self.records[job.trial]
        try:
            metrics = future.result()
        except InputError:
            raise
        except Exception as err:  # a failed trial is recorded and dominated; the study goes on
            record.status, record.error = "failed", f"{type(err).__name__}: {err}"
            self.store.save(record)
            self.log.append({"event": "done", "trial": job.trial, "rung": job.rung,
                             "losses": [float("inf")] * len(self.objectives)})
            self.scheduler.report(job, [float("inf")] * len(self.objectives))
            return
        self.finish(job, record, metrics, time.perf_counter() - started)

    def finish(self, job: Any, record: TrialRecord, metrics: dict[str, Any], seconds: float) -> None:
        losses = losses_of(metrics, self.objectives, self.constraints)
        record.results.append({"budget": job.budget, "rung": job.rung, "metrics": metrics, "losses": losses})
        record.status, record.seconds = "done", record.seconds + seconds
        self.store.save(record)
        self.complete(job, record, losses)
        if self.progress is not None:
            self.progress(record)

    def complete(self, job: Any, record: TrialRecord, losses: list[float]) -> None:
        """Log a finished job, then tell the scheduler and, at the lowest rung (every trial has
        a result there: comparable), the proposer; a replay repeats both from the log."""
        told = job.rung == 0
        self.log.append({"event": "done", "trial": job.trial, "rung": job.rung, "losses": losses, "told": told})
        kill_point("search.trial_done")
        self.scheduler.report(job, losses)
        if told:
            self.proposer.tell(record.raw, losses)


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
