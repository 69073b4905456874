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
import json
from pathlib import Path

from hamnet_jax.cli.setup import _setup, job_metrics
from hamnet_jax.cli.tracking_options import add_tracking_arguments, finishing, tracked_run
from hamnet_jax.search.study import SCHEDULERS


def rung_list(text: str) -> tuple[int, ...]:
    """`--rungs 1,4,9` -> (1, 4, 9)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole epochs separated by commas, e.g. 1,4,9") from None


def cmd_search(args: argparse.Namespace) -> None:
    import yaml
    from tqdm import tqdm

    from hamnet_jax.search.space import SearchSpace
    from hamnet_jax.search.study import StudyRequest, run_search

    config = _setup(args)
    space = None
    if args.space:
        raw = yaml.safe_load(Path(args.space).read_text()) or {}
        space = SearchSpace.from_dict(raw.get("space", raw), args.space)
    base = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    request = StudyRequest(
        kind=args.kind, data=args.data, out=args.out, base=base or {}, space=space, strategy=args.strategy,
        scheduler=args.scheduler, trials=args.trials, min_epochs=args.min_epochs, max_epochs=args.max_epochs,
        eta=args.eta, rungs=args.rungs, budget=args.budget, objectives=tuple(args.objectives.split(",")),
        max_params=args.max_params, max_latency_ms=args.max_latency_ms, min_layers=args.min_layers,
        max_layers=args.max_layers, workers=args.workers, executor=args.executor, ray_address=args.ray_address,
        share_compilations=not args.no_compilation_cache, fast_compile=args.fast_compile,
        best_run=not args.no_best_run, seed=args.seed,
        resume=args.resume)
    out = Path(args.out)
    tracker = tracked_run(args, config, out.name, out, {"kind": args.kind, "data": args.data,
                                                        **{k: v for k, v in vars(args).items()
                                                           if k in STUDY_FLAGS and v is not None}})
    bar = tqdm(desc=f"search {args.kind}", unit="job", disable=args.quiet)
    metrics = job_metrics(args.metrics_port)

    def progress(record, names: list[str]) -> None:
        bar.update(1)
        if metrics is not None:
            last = record.last()
            losses = dict(zip(names, last["losses"], strict=True)) if last else None
            metrics.record_trial(record.status, losses)
        if tracker is not None:
            from hamnet_jax.search.study_tracking import log_trial

            tracker.remember(out)
            log_trial(tracker, record)

    try:
        with finishing(tracker):
            report = run_search(request, config, progress)
            if tracker is not None:
                from hamnet_jax.search.study_tracking import log_study

                log_study(tracker, out, report)
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    for row in report["pareto_front"]:
        print(json.dumps({"trial": row["trial"], **row["objectives"], "config": row["config"]}, default=str))
    best = report.get("best_run")
    print(f"{report['trials']} trials ({report['failed']} failed), {report['trial_epochs']} trial-epochs; "
          f"{len(report['pareto_front'])} on the Pareto front at {report['full_budget']} epochs; analysis, plots and "
          f"TensorBoard HParams in {report['store']}" + (f"; the best trial ({best['trial']}) is the run "
                                                        f"{best['run_dir']}" if best else ""))


# the study's settings logged as the MLflow parent run's parameters
STUDY_FLAGS = ("strategy", "scheduler", "trials", "min_epochs", "max_epochs", "eta", "rungs", "budget", "objectives",
               "max_params", "max_latency_ms", "min_layers", "max_layers", "workers", "seed")


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
    s.add_argument("--scheduler", choices=SCHEDULERS,
                   help="multi-fidelity scheduler (default asha; sha: synchronous successive halving, promotions "
                        "independent of finishing order)")
    s.add_argument("--trials", type=int, help="configurations to try (default: nas.population_size x "
                                              "nas.generations, or hyperparameter_optimization.max_trials)")
    s.add_argument("--min-epochs", type=int, help="the smallest budget (epochs; default the first of --rungs, else 1)")
    s.add_argument("--max-epochs", type=int, help="the full budget (default hyperparameter_optimization."
                                                  "max_epochs_per_trial)")
    s.add_argument("--eta", type=int, default=3, help="successive-halving reduction factor")
    s.add_argument("--rungs", type=rung_list, metavar="E,E,...",
                   help="the rungs' epochs, e.g. 1,4,9 (default: min-epochs x eta^k up to max-epochs); the last is "
                        "the full budget")
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
    s.add_argument("--fast-compile", action="store_true",
                   help="worker processes compile trials with XLA flags that compile ~3x faster and run slower "
                        "(needs --workers >= 2 and no latency_ms objective; FLOPs are unaffected)")
    s.add_argument("--no-best-run", action="store_true",
                   help="skip writing OUT/best (the best trial's run, trained to the full budget)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--resume", action="store_true", help="continue the study in --out")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics (trials, best value per objective) "
                                                    "on this port while the study runs (0: a free one)")
    add_tracking_arguments(s)
    s.set_defaults(func=cmd_search)
