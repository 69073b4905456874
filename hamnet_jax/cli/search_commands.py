"""`hamnet search nas|hpo`: architecture or hyperparameter search on a data file.

    hamnet search nas --data cohort.parquet --out studies/nas --trials 27 --max-epochs 9 \
        --scheduler asha --objectives val_mae,latency_ms --workers 2 [--budget 120]
    hamnet search nas ... --resume          # continues a killed study

The base run config (`--config`) supplies everything the search does not vary; the
`nas:` / `hyperparameter_optimization:` sections supply the original defaults (strategy,
depth bounds, population, trials, epochs per trial); flags override them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from pathlib import Path

from hamnet_jax.cli.setup import _setup, job_metrics
from hamnet_jax.errors import InputError

SCHEDULERS = ("asha", "hyperband", "full")


def _space(args: argparse.Namespace, config) -> object:
    import yaml

    from hamnet_jax.search.space import SearchSpace
    from hamnet_jax.search.spaces import architecture_space, training_space

    if args.space:
        raw = yaml.safe_load(Path(args.space).read_text()) or {}
        return SearchSpace.from_dict(raw.get("space", raw), args.space)
    if args.kind == "hpo":
        return training_space()
    nas = config.section("nas")
    given = config.given.get("nas", ())
    low = args.min_layers or (nas.min_layers if "min_layers" in given else 1)
    high = args.max_layers or (nas.max_layers if "max_layers" in given else 4)
    return architecture_space(low, high)


def _strategy(args: argparse.Namespace, config) -> tuple[str, str]:
    """(proposer, scheduler) from the flags or the section's original strategy name."""
    if args.kind == "nas":
        strategy = args.strategy or config.section("nas").search_strategy
    else:
        strategy = args.strategy or config.section("hyperparameter_optimization").strategy
    scheduler = args.scheduler
    if strategy in ("hyperband", "asha"):  # the original names of schedulers, over random proposals
        strategy, scheduler = "random", scheduler or strategy
    if strategy in ("differentiable", "reinforcement"):
        raise InputError(f"search strategy {strategy!r} is not implemented; use one of random, grid, evolutionary, "
                         "differential, bayesian, cma, ngopt")
    return strategy, scheduler or "asha"


def _share_compilations(cache: Path) -> None:
    """Trials of a study compile many of the same programs (evaluation, prediction, a
    promoted trial's steps): JAX's persistent compilation cache in the study lets them
    reuse each other's. Measured in experiments/bench_search.py's HPO part: a base-tier
    trial job 60 -> 30 s. Worker processes (and a local Ray instance) inherit the
    environment; this process takes the config (it has compiled nothing yet)."""
    import jax

    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache.resolve())
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    jax.config.update("jax_compilation_cache_dir", str(cache.resolve()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def cmd_search(args: argparse.Namespace) -> None:
    import yaml
    from tqdm import tqdm

    from hamnet_jax.data.dataset import CACHE_DIR
    from hamnet_jax.search.engine import Constraint, Objective, run_study
    from hamnet_jax.search.executors import ProcessExecutor, RayExecutor, SerialExecutor
    from hamnet_jax.search.finalize import finalize_study
    from hamnet_jax.search.hamnet_trial import check_metrics, hamnet_trial
    from hamnet_jax.search.proposers import Proposer
    from hamnet_jax.search.schedulers import ASHA, FullBudget, Hyperband
    from hamnet_jax.search.store import open_study

    config = _setup(args)
    space = _space(args, config)
    strategy, scheduler_name = _strategy(args, config)
    hpo = config.section("hyperparameter_optimization")
    nas = config.section("nas")
    trials = args.trials or (nas.population_size * nas.generations if args.kind == "nas" else hpo.max_trials)
    max_epochs = args.max_epochs or hpo.max_epochs_per_trial
    objectives = [Objective(*(name.split(":") + ["min"])[:2]) for name in args.objectives.split(",") if name]
    check_metrics([o.metric for o in objectives])
    constraints = ([Constraint("params", args.max_params)] if args.max_params else []) + (
        [Constraint("latency_ms", args.max_latency_ms)] if args.max_latency_ms else [])
    if scheduler_name == "asha":
        scheduler = ASHA(args.min_epochs, max_epochs, trials, args.eta)
    elif scheduler_name == "hyperband":
        scheduler = Hyperband(args.min_epochs, max_epochs, args.eta)
        trials = scheduler.trials_planned
    else:
        scheduler = FullBudget(max_epochs, trials)
    proposer = Proposer(space, strategy, trials, args.seed, nas.population_size, nas.mutation_rate,
                        nas.crossover_rate)
    if proposer.size is not None and trials > proposer.size:
        raise InputError(f"--trials {trials}: the grid holds {proposer.size} points")
    base = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    base = {k: v for k, v in (base or {}).items() if k in ("model", "training", "data", "general", "regularization")}
    identity = {"kind": args.kind, "data": str(Path(args.data).resolve()), "space": space.describe(),
                "strategy": strategy, "scheduler": scheduler_name, "min_epochs": args.min_epochs,
                "max_epochs": max_epochs, "eta": args.eta, "trials": trials, "seed": args.seed,
                "objectives": [o.metric + ":" + o.direction for o in objectives], "base": base}
    store = open_study(args.out, identity, args.resume)
    if (base.get("data") or {}).get("cache", True):  # one cohort cache for every trial (unless the base names one)
        base = {**base, "data": {"cache_dir": str((store.root / CACHE_DIR).resolve()), **(base.get("data") or {})}}
    if not args.no_compilation_cache:
        _share_compilations(store.root / "xla_cache")
    if args.executor == "ray":
        executor = RayExecutor(args.workers, args.ray_address)
    elif args.workers > 1:
        executor = ProcessExecutor(args.workers)
    else:
        executor = SerialExecutor()
    patience = hpo.early_stop_patience if scheduler_name == "full" else 0  # schedulers stop trials themselves
    speed = bool({"latency_ms", "flops"} & {x.metric for x in [*objectives, *constraints]})
    trial_fn = functools.partial(hamnet_trial, data=str(args.data), config=base, early_stop_patience=patience,
                                 measure_speed=speed, schedule_epochs=max_epochs)
    bar = tqdm(desc=f"search {args.kind}", unit="job", disable=args.quiet)
    metrics = job_metrics(args.metrics_port)

    def progress(record) -> None:
        bar.update(1)
        if metrics is not None:
            last = record.last()
            losses = dict(zip([o.metric for o in objectives], last["losses"], strict=True)) if last else None
            metrics.record_trial(record.status, losses)

    try:
        records = run_study(store, space, objectives, scheduler, proposer, trial_fn, constraints, executor,
                            progress=progress, max_trial_epochs=args.budget)
    finally:
        bar.close()
        executor.shutdown()
        if metrics is not None:
            metrics.close()
    report = finalize_study(store, records, objectives, max_epochs, None if args.no_best_run else trial_fn)
    for row in report["pareto_front"]:
        print(json.dumps({"trial": row["trial"], **row["objectives"], "config": row["config"]}, default=str))
    best = report.get("best_run")
    print(f"{len(records)} trials ({report['failed']} failed), {report['trial_epochs']} trial-epochs; "
          f"{len(report['pareto_front'])} on the Pareto front at {report['full_budget']} epochs; analysis, plots and "
          f"TensorBoard HParams in {store.root}" + (f"; the best trial ({best['trial']}) is the run {best['run_dir']}"
                                                   if best else ""))


def add_search_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("search", help="architecture (nas) or hyperparameter (hpo) search with nevergrad, "
                                      "multi-fidelity, multi-objective, resumable")
    s.add_argument("kind", choices=("nas", "hpo"))
    s.add_argument("--data", required=True, help="the data file (its .schema.yaml beside it)")
    s.add_argument("--config", help="base hamnet_config.yaml: what the search does not vary, and the nas / "
                                    "hyperparameter_optimization sections")
    s.add_argument("--out", required=True, help="the study directory (created, or continued with --resume)")
    s.add_argument("--space", help="a YAML search space (name: {type, low, high, log, options, grid, when})")
    s.add_argument("--strategy", help="random, grid, evolutionary, differential, bayesian, cma, ngopt (or the "
                                      "schedulers' names hyperband / asha: random proposals)")
    s.add_argument("--scheduler", choices=SCHEDULERS, help="multi-fidelity scheduler (default asha)")
    s.add_argument("--trials", type=int, help="configurations to try (default: nas.population_size x "
                                              "nas.generations, or hyperparameter_optimization.max_trials)")
    s.add_argument("--min-epochs", type=int, default=1, help="the smallest budget (epochs)")
    s.add_argument("--max-epochs", type=int, help="the full budget (default hyperparameter_optimization."
                                                  "max_epochs_per_trial)")
    s.add_argument("--eta", type=int, default=3, help="successive-halving reduction factor")
    s.add_argument("--budget", type=int, help="at most this many trial-epochs in all (a promoted trial costs the "
                                              "epochs it adds); a resumed study may be given more")
    s.add_argument("--objectives", default="val_mae",
                   help="metrics to minimize (name or name:max), comma-separated: val_mae, val_loss, latency_ms, "
                        "params, flops, ...")
    s.add_argument("--max-params", type=float, help="constraint: at most this many parameters")
    s.add_argument("--max-latency-ms", type=float, help="constraint: batch-1 latency at most this")
    s.add_argument("--min-layers", type=int, help="nas: fewest fusion layers (default nas.min_layers if given, 1)")
    s.add_argument("--max-layers", type=int, help="nas: most fusion layers (default nas.max_layers if given, 4)")
    s.add_argument("--workers", type=int, default=1, help="trials at once (local processes, or Ray tasks)")
    s.add_argument("--executor", choices=("local", "ray"), default="local")
    s.add_argument("--ray-address", help="a Ray cluster to join (default: start a local Ray instance)")
    s.add_argument("--no-compilation-cache", action="store_true",
                   help="do not share compiled programs between trials (JAX's persistent cache in OUT/xla_cache)")
    s.add_argument("--no-best-run", action="store_true",
                   help="skip writing OUT/best (the best trial's run, trained to the full budget)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--resume", action="store_true", help="continue the study in --out")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics (trials, best value per objective) "
                                                    "on this port while the study runs (0: a free one)")
    s.set_defaults(func=cmd_search)
