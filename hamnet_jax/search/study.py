"""A HAMNet architecture (nas) or hyperparameter (hpo) study on a data file, in one call:
what `hamnet search` runs and the pipeline's search stages call.

    request = StudyRequest(kind="nas", data="cohort.parquet", out="studies/nas", trials=27, max_epochs=9,
                           objectives=("val_mae", "flops"))
    report = run_search(request, config)       # config: the run config (nas / hpo sections)

The base config (`request.base`, a YAML mapping) supplies everything the search does not
vary; the `nas:` / `hyperparameter_optimization:` sections supply the original defaults
(strategy, depth bounds, population, trials, epochs per trial); the request's fields
override them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hamnet_jax.config import Config
from hamnet_jax.data.schema import sidecar_path
from hamnet_jax.errors import InputError
from hamnet_jax.file_lock import owned
from hamnet_jax.job_dir import data_identity, file_digest

SCHEDULERS = ("asha", "sha", "hyperband", "full")
BASE_SECTIONS = ("model", "training", "data", "general", "regularization")  # what a trial's run config takes


@dataclasses.dataclass(frozen=True)
class StudyRequest:
    """One study: `None` fields take the config sections' values."""

    kind: str  # nas | hpo
    data: str
    out: str
    base: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    space: Any = None  # a SearchSpace; None: the built-in space of `kind`
    strategy: str | None = None
    scheduler: str | None = None
    default_scheduler: str = "asha"  # when neither `scheduler` nor the strategy names one
    trials: int | None = None
    min_epochs: int | None = None  # None: the first of `rungs`, else 1
    max_epochs: int | None = None  # None: the last of `rungs`, else the section's max_epochs_per_trial
    eta: int = 3
    rungs: tuple[int, ...] | None = None  # the rungs' epochs (None: min_epochs * eta^k)
    budget: int | None = None
    objectives: tuple[str, ...] = ("val_mae",)
    max_params: float | None = None
    max_latency_ms: float | None = None
    min_layers: int | None = None
    max_layers: int | None = None
    workers: int = 1
    executor: str = "local"
    ray_address: str | None = None
    share_compilations: bool = True
    fast_compile: bool = False  # worker processes compile with search.fast_compile's flags (no latency objective)
    best_run: bool = True
    seed: int = 0
    resume: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("nas", "hpo"):
            raise InputError(f"search kind {self.kind!r}: expected nas or hpo")
        for given in (self.scheduler, self.default_scheduler):
            if given is not None and given not in SCHEDULERS:
                raise InputError(f"search scheduler {given!r}: expected one of {list(SCHEDULERS)}")
        timed = self.max_latency_ms is not None or any(o.split(":")[0] == "latency_ms" for o in self.objectives)
        if self.fast_compile and (timed or self.executor != "local" or self.workers < 2):
            raise InputError("search fast_compile: compiles trials in worker processes with flags that slow the "
                             "compiled program, so it needs the local executor with workers >= 2 and no latency_ms "
                             "objective or constraint")


def study_space(request: StudyRequest, config: Config) -> Any:
    from hamnet_jax.search.spaces import architecture_space, training_space

    if request.space is not None:
        return request.space
    if request.kind == "hpo":
        return training_space()
    nas = config.section("nas")
    given = config.given.get("nas", ())
    low = request.min_layers or (nas.min_layers if "min_layers" in given else 1)
    high = request.max_layers or (nas.max_layers if "max_layers" in given else 4)
    return architecture_space(low, high)


def study_strategy(request: StudyRequest, config: Config) -> tuple[str, str]:
    """(proposer, scheduler) from the request or the section's original strategy name."""
    if request.kind == "nas":
        strategy = request.strategy or config.section("nas").search_strategy
    else:
        strategy = request.strategy or config.section("hyperparameter_optimization").strategy
    scheduler = request.scheduler
    if strategy in ("hyperband", "asha"):  # the original names of schedulers, over random proposals
        strategy, scheduler = "random", scheduler or strategy
    if strategy in ("differentiable", "reinforcement"):
        raise InputError(f"search strategy {strategy!r} is not implemented; use one of random, grid, evolutionary, "
                         "differential, bayesian, cma, ngopt")
    return strategy, scheduler or request.default_scheduler


def share_compilations(cache: Path) -> None:
    """Trials of a study compile many of the same programs (evaluation, prediction, a
    promoted trial's steps): JAX's persistent compilation cache in the study lets them
    reuse each other's. Measured in experiments/bench_search.py's HPO part: a base-tier
    trial job 60 -> 30 s. Worker processes (and a local Ray instance) inherit the
    environment; this process takes the config."""
    import jax

    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache.resolve())
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    jax.config.update("jax_compilation_cache_dir", str(cache.resolve()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def _scheduler(name: str, request: StudyRequest, trials: int, min_epochs: int, max_epochs: int) -> tuple[Any, int]:
    from hamnet_jax.search.schedulers import ASHA, FullBudget, Hyperband, SuccessiveHalving

    if name == "full" and request.rungs is not None:
        raise InputError(f"search rungs {list(request.rungs)}: the full scheduler has no rungs (every trial trains "
                         "max_epochs); give asha, sha or hyperband")
    if name == "asha":
        return ASHA(min_epochs, max_epochs, trials, request.eta, rungs=request.rungs), trials
    if name == "sha":
        return SuccessiveHalving(min_epochs, max_epochs, trials, request.eta, rungs=request.rungs), trials
    if name == "hyperband":
        scheduler = Hyperband(min_epochs, max_epochs, request.eta, rungs=request.rungs)
        return scheduler, scheduler.trials_planned
    return FullBudget(max_epochs, trials), trials


def _executor(request: StudyRequest) -> Any:
    from hamnet_jax.search.executors import ProcessExecutor, RayExecutor, SerialExecutor
    from hamnet_jax.search.fast_compile import with_fast_compile

    if request.executor == "ray":
        return RayExecutor(request.workers, request.ray_address)
    if request.executor != "local":
        raise InputError(f"search executor {request.executor!r}: expected local or ray")
    if request.workers < 2:
        return SerialExecutor()
    env = {"XLA_FLAGS": with_fast_compile(os.environ.get("XLA_FLAGS"))} if request.fast_compile else None
    return ProcessExecutor(request.workers, env)


def run_search(request: StudyRequest, config: Config,
               progress: Callable[[Any, list[str]], None] | None = None) -> dict[str, Any]:
    """Run (or, with `request.resume`, continue) the study in `request.out`; returns the
    finalized report (Pareto front, analysis, `best_run` unless `best_run=False`).
    `progress(record, objective_names)` is called as each trial job ends."""
    from hamnet_jax.search.engine import Constraint, Objective, run_study
    from hamnet_jax.search.finalize import finalize_study
    from hamnet_jax.search.hamnet_trial import check_metrics, hamnet_trial
    from hamnet_jax.search.proposers import Proposer
    from hamnet_jax.search.store import open_study

    space = study_space(request, config)
    strategy, scheduler_name = study_strategy(request, config)
    hpo, nas = config.section("hyperparameter_optimization"), config.section("nas")
    trials = request.trials or (nas.population_size * nas.generations if request.kind == "nas" else hpo.max_trials)
    rungs = request.rungs
    min_epochs = request.min_epochs or (rungs[0] if rungs else 1)
    max_epochs = request.max_epochs or (rungs[-1] if rungs else hpo.max_epochs_per_trial)
    objectives = [Objective(*(name.split(":") + ["min"])[:2]) for name in request.objectives if name]
    check_metrics([o.metric for o in objectives])
    constraints = ([Constraint("params", request.max_params)] if request.max_params else []) + (
        [Constraint("latency_ms", request.max_latency_ms)] if request.max_latency_ms else [])
    scheduler, trials = _scheduler(scheduler_name, request, trials, min_epochs, max_epochs)
    proposer = Proposer(space, strategy, trials, request.seed, nas.population_size, nas.mutation_rate,
                        nas.crossover_rate)
    if proposer.size is not None and trials > proposer.size:
        raise InputError(f"--trials {trials}: the grid holds {proposer.size} points")
    base = {k: v for k, v in dict(request.base).items() if k in BASE_SECTIONS}
    schema_file = sidecar_path(request.data)
    identity = {"kind": request.kind, "data": data_identity(request.data),  # (by content, as a run's: job_dir.py)
                "schema": file_digest(schema_file) if schema_file.exists() else None, "space": space.describe(),
                "strategy": strategy, "scheduler": scheduler_name, "min_epochs": min_epochs,
                "max_epochs": max_epochs, "eta": request.eta, "trials": trials, "seed": request.seed,
                "objectives": [o.metric + ":" + o.direction for o in objectives], "base": base,
                **({"rungs": list(rungs)} if rungs else {})}  # (absent unless given: older studies resume)
    store = open_study(request.out, identity, request.resume)
    if request.share_compilations:
        share_compilations(store.root / "xla_cache")
    speed = tuple(sorted({"latency_ms", "flops"} & {x.metric for x in [*objectives, *constraints]}))
    executor = _executor(request)
    patience = hpo.early_stop_patience if scheduler_name == "full" else 0  # schedulers stop trials themselves
    trial_fn = functools.partial(hamnet_trial, data=str(request.data), config=base, early_stop_patience=patience,
                                 measure_speed=speed, schedule_epochs=max_epochs)
    names = [o.metric for o in objectives]
    with owned(store.root, "study"):  # (two processes running one study: the second is refused)
        try:
            records = run_study(store, space, objectives, scheduler, proposer, trial_fn, constraints, executor,
                                progress=(lambda record: progress(record, names)) if progress else None,
                                max_trial_epochs=request.budget)
        finally:
            executor.shutdown()
        report = finalize_study(store, records, objectives, max_epochs, trial_fn if request.best_run else None)
    report["trials"] = len(records)
    report["store"] = str(store.root)
    return report
