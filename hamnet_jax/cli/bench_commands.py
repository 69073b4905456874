"""`hamnet bench`: the benchmark suite on this machine, one run, one report.

    hamnet bench --run runs/main/fp32 --data cohort.parquet [--pruned RUN] [--distilled RUN] \
        [--config hamnet_config.yaml] [--out DIR] [--types latency,throughput,...] \
        [--batch-sizes 1,8,32,256] [--iterations 50] [--concurrency 1,10,50] [--duration 5] \
        [--profile] [--no-hardware] [--no-tensorrt]

Defaults come from the `benchmarking:` section; flags override it. Writes DIR/results.json,
DIR/report.md (the "Model Optimization Results", "Inference Performance" and "Deployment
Scalability" tables) and its PNG charts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hamnet_jax.cli.setup import _setup
from hamnet_jax.errors import InputError


def _ints(text: str | None, flag: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise InputError(f"{flag} {text!r}: expected positive integers")
    return values


def cmd_bench(args: argparse.Namespace) -> None:
    from hamnet_jax.bench.suite import BenchSettings, run_benchmarks

    config = _setup(args)
    section = config.section("benchmarking")
    for flag, path in (("--run", args.run), ("--pruned", args.pruned), ("--distilled", args.distilled)):
        if path and not Path(path).is_dir():
            raise InputError(f"{flag} {path}: not a run directory")
    if not Path(args.data).exists():
        raise InputError(f"--data {args.data}: no such file")
    settings = BenchSettings.from_section(
        section, types=tuple(args.types.split(",")) if args.types else None, iterations=args.iterations,
        batch_sizes=_ints(args.batch_sizes, "--batch-sizes"), concurrency=_ints(args.concurrency, "--concurrency"),
        duration_s=args.duration, profile=args.profile or None,
        monitor_hardware=False if args.no_hardware else None, tensorrt=not args.no_tensorrt)
    out = Path(args.out or section.output_dir)
    results = run_benchmarks(args.run, args.data, out, settings, args.pruned, args.distilled,
                             progress=not args.quiet)
    for m in results["models"]:
        acc = f"  MAE {m['accuracy']['mae']:.3f}" if "accuracy" in m else ""
        print(f"{m['name']:<24} {m['backend']:<28} {m['size_bytes'] / 1e6:8.3f} MB{acc}")
    print(f"report: {out / 'report.md'}; figures: {out / 'results.json'}")


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="benchmark a run and its optimized forms: latency, throughput, memory, "
                                     "accuracy, the service under load; Markdown report with charts")
    b.add_argument("--run", required=True, help="the baseline run directory")
    b.add_argument("--data", required=True, help="the run's data file (its test split measures accuracy)")
    b.add_argument("--pruned", help="a pruned run of the baseline (`hamnet prune`): the '+ Pruning' row")
    b.add_argument("--distilled", help="a distilled student (`hamnet distill`): the '+ Knowledge Distill.' row")
    b.add_argument("--config", help="hamnet_config.yaml: its benchmarking section")
    b.add_argument("--out", help="report directory (default benchmarking.output_dir)")
    b.add_argument("--types", help="comma-separated: latency, throughput, memory, accuracy, scalability")
    b.add_argument("--batch-sizes", help="comma-separated batch sizes (default benchmarking.batch_sizes)")
    b.add_argument("--iterations", type=int, help="timed calls per model and batch size")
    b.add_argument("--concurrency", help="comma-separated concurrent clients of the load test")
    b.add_argument("--duration", type=float, help="seconds per load level")
    b.add_argument("--profile", action="store_true", help="write a jax.profiler trace of the baseline (TensorBoard)")
    b.add_argument("--no-hardware", action="store_true", help="do not sample CPU / memory / GPU while measuring")
    b.add_argument("--no-tensorrt", action="store_true", help="leave the TensorRT row out even on a GPU")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_bench)
