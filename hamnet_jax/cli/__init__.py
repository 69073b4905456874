"""The `hamnet` command: thin subcommands over the library.

Exit codes (`EXIT_CODES`, shown by `hamnet --help`): 0 success, 2 bad input, 3 a check
found a problem, 74 a full disk, 1 a crash.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

from hamnet_jax.errors import DiskFullError, InputError, is_disk_full
from hamnet_jax.platform.host_memory import reexec_with_fast_malloc, started_as_cli

if started_as_cli():  # before the imports below: the `hamnet` process runs with a faster allocator
    try:
        reexec_with_fast_malloc()
    except InputError as e:  # (a bad HAMNET_MALLOC)
        print(f"hamnet: error: {e}", file=sys.stderr)
        sys.exit(2)

from hamnet_jax.cli.bench_commands import add_bench_parser
from hamnet_jax.cli.cache_commands import add_cache_parser
from hamnet_jax.cli.cv_commands import add_cv_parser
from hamnet_jax.cli.inference_commands import add_inference_parsers
from hamnet_jax.cli.monitoring_commands import add_monitoring_parsers
from hamnet_jax.cli.output_paths import refuse_output_over_input
from hamnet_jax.cli.pipeline_commands import add_pipeline_parser
from hamnet_jax.cli.search_commands import add_search_parser
from hamnet_jax.cli.tracking_options import add_tracking_arguments, tracked_job
from hamnet_jax.cli.setup import EXECUTION, GENERAL, USES, _setup, add_tier_argument, job_metrics  # noqa: F401 (USES: tests)
from hamnet_jax.cli.setup import data_schema as _schema

__all__ = ["build_parser", "main"]

log = logging.getLogger("hamnet_jax")
EX_IOERR = 74  # sysexits.h: an input/output error (a full disk)
EXIT_CODES = """exit codes:
  0   success
  2   bad input: one line on stderr names the field, column, row or file at fault
  3   a check found a problem (`drift --fail-on-drift` found drift)
  74  a full disk: the line names the path being written; the last complete state is kept
  1   a crash (a bug: please report it with the traceback)"""


def cmd_cohort(args: argparse.Namespace) -> None:
    from hamnet_jax.cohort.default import CohortDims
    from hamnet_jax.cohort.file import write_cohort

    _setup(args)
    defaults = CohortDims()
    dims = CohortDims(*(getattr(args, f"{f}_dim") or getattr(defaults, f) for f in
                        ("clinical", "imaging", "genetic", "lifestyle_numeric")))
    rows, columns, side = write_cohort(args.out, args.subjects, args.seed, dims, args.generator, not args.quiet)
    print(f"wrote {rows} rows ({args.subjects} subjects, {columns} columns) to {args.out}; schema {side}")


def cmd_train(args: argparse.Namespace) -> None:
    import dataclasses

    from hamnet_jax.runs.train import train_run

    from hamnet_jax.training.distributed import initialize_distributed

    config = _setup(args)
    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id, args.distributed)
    if args.tier:
        config = dataclasses.replace(config, model={**config.model, "tier": args.tier})
    config = dataclasses.replace(config, training=_training_flags(config.training, args, args.precision,
                                                                  num_epochs=args.epochs))
    out = args.out or str(Path(config.general.output_dir) / time.strftime("run-%Y%m%d-%H%M%S"))
    start = time.time()
    metrics = job_metrics(args.metrics_port)

    def train(tracker) -> dict:
        def on_epoch(record: dict) -> None:
            if metrics:
                metrics.record_epoch(record["epoch"], record.get("train_loss"), record.get("val_loss"),
                                     seconds=record["seconds"], samples=record["samples"])
            if tracker:
                tracker(record)

        return train_run(args.data, schema, config, out, resume=args.resume, progress=not args.quiet,
                         on_epoch=on_epoch if metrics or tracker else None)

    schema = _schema(args)
    try:
        summary = tracked_job(args, config, Path(out), {**config.to_dict(), "data": str(args.data)}, train)
    finally:
        if metrics:
            metrics.close()
    t = summary["test"]
    parts = []
    if "mae" in t:
        gap = f", age-gap r {t['age_gap_r']:.3f}" if "age_gap_r" in t else ""
        parts.append(f"test MAE {t['mae']:.3f}, RMSE {t['rmse']:.3f}, R2 {t['r2']:.3f}, r {t['pearson_r']:.3f}, "
                     f"90% coverage {t['coverage_90']:.3f}{gap}")
    if "auroc" in t:
        parts.append(f"outcome AUROC {t['auroc']:.3f}, accuracy {t['accuracy']:.3f}, log loss {t['log_loss']:.3f}, "
                     f"Brier {t['brier']:.3f}")
    print(f"run {out}: best epoch {summary['best_epoch']}/{summary['epochs_run']}, {time.time() - start:.0f} s; "
          + "; ".join(parts))


def _training_flags(training, args: argparse.Namespace, precision: str | None, **more):
    """The training config with the loop flags (--precision, --accumulation-steps, --mesh) applied."""
    import dataclasses

    overrides = {"precision_mode": precision, "gradient_accumulation_steps": args.accumulation_steps,
                 "mesh": _mesh_flag(args.mesh), **more}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(training, **overrides) if overrides else training


def _loop_flags_given(args: argparse.Namespace, precision: str | None) -> list[str]:
    given = {"--accumulation-steps": args.accumulation_steps, "--mesh": args.mesh, "--resume": args.resume or None}
    return [k for k, v in given.items() if v is not None] + (["--train-precision"] if precision else [])


def _mesh_flag(text: str | None) -> dict[str, int] | None:
    """'data=4,tensor=2' -> {'data': 4, 'tensor': 2}."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, size = part.partition("=")
        try:
            out[name.strip()] = int(size)
        except ValueError:
            raise InputError(f"--mesh: expected axis=size pairs such as 'data=4,tensor=2', got {text!r}") from None
    return out


def cmd_evaluate(args: argparse.Namespace) -> None:
    from hamnet_jax.runs.evaluate import evaluate_run, format_table
    from hamnet_jax.io_atomic import write_json_atomic
    from hamnet_jax.runs.run_dir import load_run

    _setup(args)
    run = load_run(args.run)
    result = evaluate_run(run, args.data, baselines=not args.no_baselines, baseline_features=args.baseline_features,
                          baseline_subjects=args.baseline_subjects,
                          progress=None if args.quiet else lambda line: print(line, file=sys.stderr, flush=True))
    print(format_table(result))
    write_json_atomic(Path(args.run) / "eval.json", result)


def _print_compressed(summary: dict, out: str) -> None:
    base, new = summary["baseline_metrics"], summary["optimized_metrics"]
    print(f"wrote {out}: params {summary['baseline_params']:,} -> {summary['optimized_params']:,}, "
          f"weights {summary['weights_file']} {summary['weights_file_bytes'] / 1e6:.3f} MB vs dense fp32 "
          f"{summary['baseline_bytes'] / 1e6:.3f} MB ({summary['compression_ratio']:.2f}x), latency at batch "
          f"{summary['latency_batch_size']} {summary['baseline_latency_ms']:.1f} -> "
          f"{summary['optimized_latency_ms']:.1f} ms ({summary['speedup_factor']:.2f}x), test MAE (deterministic) "
          f"{base['mae']:.3f} -> {new['mae']:.3f} ({summary['accuracy_drop']:+.1%}); test MAE as `hamnet evaluate` "
          f"reports it {summary['test']['mae']:.3f}")


def _section_with_flags(config, name: str, flags: dict) -> dict:
    """The YAML section `name` as given, with the command's flags on top."""
    section = {k: getattr(config.sections[name], k) for k in config.given.get(name, ())} if name in config.sections \
        else {}
    section.update({k: v for k, v in flags.items() if v is not None})
    return section


def _refuse(section: str, given: dict, keys: tuple[str, ...], why: str) -> None:
    for key in keys:
        if key in given:
            raise InputError(f"{section}.{key} ({why})")


def cmd_prune(args: argparse.Namespace) -> None:
    from hamnet_jax.runs.compress import compress_run
    from hamnet_jax.config import PruningConfig

    config = _setup(args)
    section = _section_with_flags(config, "pruning", {
        "method": args.method, "target_sparsity": args.sparsity, "pruning_schedule": args.schedule,
        "finetune_epochs": args.epochs, "cycles": args.cycles})
    pruning = PruningConfig.from_section(section)
    if not pruning.gradual:
        _refuse("pruning", section, ("pruning_schedule", "start_epoch", "end_epoch", "pruning_frequency"),
                f"--schedule and its keys apply to gradual pruning only; method {pruning.method.value} with "
                f"{pruning.cycles} cycle(s) prunes one-shot per cycle")
    if pruning.method.value != "structured":
        _refuse("pruning", section, ("structures", "compact"), "applies to structured pruning only")
    training = _training_flags(_source_training(args, config), args, args.precision)
    params = {"pruning": dataclasses.asdict(pruning), "source_run": args.run, "data": args.data}
    _print_compressed(tracked_job(args, config, Path(args.out), params, lambda on_epoch: compress_run(
        args.run, args.data, args.out, pruning, None, training, args.resume, not args.quiet, on_epoch)), args.out)


def _source_training(args: argparse.Namespace, config):
    """The training config a derived run fine-tunes with: the source run's, with the
    config file's `training:` keys on top when one is given."""
    import dataclasses

    from hamnet_jax.runs.run_dir import load_run_config

    base = load_run_config(args.run).training
    given = {k: getattr(config.training, k) for k in config.given.get("training", ())}
    return dataclasses.replace(base, **given) if given else base


def cmd_quantize(args: argparse.Namespace) -> None:
    from hamnet_jax.runs.compress import compress_run
    from hamnet_jax.config import QuantizationConfig

    config = _setup(args)
    section = _section_with_flags(config, "quantization", {
        "mode": args.mode, "precision": args.precision, "calibration_method": args.calibration})
    quantization = QuantizationConfig.from_section(section)
    mode = quantization.mode.value
    if mode != "static":
        _refuse("quantization", section, ("calibration_method", "percentile", "calibration_batches",
                                          "calibration_batch_size"),
                f"--calibration applies to static mode, not {mode}")
    if mode != "mixed":
        _refuse("quantization", section, ("candidate_bits", "sensitivity_tolerance"),
                f"applies to mixed mode, not {mode}")
    if mode != "qat":
        _refuse("quantization", section, ("qat_epochs", "learning_rate", "batch_size"),
                f"applies to qat mode, not {mode}")
        flags = _loop_flags_given(args, args.train_precision)
        if flags:
            raise InputError(f"quantize {', '.join(flags)}: only --mode qat trains; {mode} has no training loop")
    training = _training_flags(_source_training(args, config), args, args.train_precision)
    params = {"quantization": dataclasses.asdict(quantization), "source_run": args.run, "data": args.data}
    _print_compressed(tracked_job(args, config, Path(args.out), params, lambda on_epoch: compress_run(
        args.run, args.data, args.out, None, quantization, training, args.resume, not args.quiet, on_epoch)),
        args.out)


def cmd_distill(args: argparse.Namespace) -> None:
    from hamnet_jax.runs.distill import distill_run
    from hamnet_jax.config import DistillationConfig

    config = _setup(args)
    flags = {"method": args.method, "temperature": args.temperature, "alpha": args.alpha, "epochs": args.epochs,
             "learning_rate": args.learning_rate, "seed": args.seed, "compression_ratio": args.ratio,
             "intermediate_features": args.features or None, "attention_maps": args.attention or None,
             "relational": args.relational or None}
    section = _section_with_flags(config, "distillation", flags)
    distillation = DistillationConfig(**section)
    if distillation.keeps_architecture:
        _refuse("distillation", section, ("compression_ratio",),
                f"--ratio does not apply: {distillation.method.value} keeps the teacher's architecture")
    if distillation.method.value != "self_distillation":
        _refuse("distillation", section, ("ema_decay",), "applies to self_distillation only")
    if distillation.method.value != "born_again":
        _refuse("distillation", section, ("generations",), "applies to born_again only")
    training = _training_flags(_source_training(args, config), args, args.precision)
    params = {"distillation": dataclasses.asdict(distillation), "source_run": args.run, "data": args.data}
    s = tracked_job(args, config, Path(args.out), params, lambda on_epoch: distill_run(
        args.run, args.data, args.out, distillation, None, training, args.resume, not args.quiet,
        on_epoch=on_epoch))
    t, st = s["teacher_metrics"], s["student_metrics"]
    print(f"wrote {args.out}: params {s['teacher_params']:,} -> {s['student_params']:,} "
          f"({s['compression_ratio']:.2f}x fewer), test MAE teacher {t['mae']:.3f} -> student {st['mae']:.3f}, "
          f"throughput at batch {s['throughput_batch_size']} {s['teacher_samples_per_s']:,.0f} -> "
          f"{s['student_samples_per_s']:,.0f} samples/s ({s['speedup']:.2f}x)")


def _loop_arguments(q: argparse.ArgumentParser, precision_flag: str = "--precision") -> None:
    """The training-loop flags every command that trains shares."""
    q.add_argument(precision_flag, help="override training.precision_mode of the loop: fp32, bf16, fp16 or mixed")
    q.add_argument("--accumulation-steps", type=int, help="override training.gradient_accumulation_steps")
    q.add_argument("--mesh", help="override training.mesh, e.g. 'data=-1' or 'fsdp=4,tensor=2'")
    q.add_argument("--resume", action="store_true", help="continue a killed job from its latest checkpoint")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    add_tracking_arguments(q)


def build_parser() -> argparse.ArgumentParser:
    from hamnet_jax.cohort.default import DEFAULT_SUBJECTS

    from hamnet_jax import __version__

    p = argparse.ArgumentParser(prog="hamnet", description="HAMNet biological-age models in JAX.",
                                epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"hamnet-jax {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("cohort", help="write the synthetic cohort and its schema")
    c.add_argument("--subjects", type=int, default=DEFAULT_SUBJECTS, help=f"subjects (default {DEFAULT_SUBJECTS})")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default="cohort.parquet", help="data file (.parquet, .csv or .npz)")
    c.add_argument("--generator", choices=("hamnet", "frailty", "interactions"), default="hamnet",
                   help="hamnet: the default cohort (cohort/default.py); frailty: a second world with other "
                        "assumptions (deficit thresholds, 1-2 visits, values missing not at random; "
                        "cohort/frailty.py); interactions: gene x environment and gene x biology effects, "
                        "thresholds and saturating imaging (cohort/interactions.py)")
    for m, default in (("clinical", 96), ("imaging", 512), ("genetic", 1000), ("lifestyle_numeric", 40)):
        c.add_argument(f"--{m.replace('_', '-')}-dim", type=int, default=None,
                       help=f"{m} width (default {default})")
    c.set_defaults(func=cmd_cohort)

    t = sub.add_parser("train", help="train HAMNet and write a run directory")
    t.add_argument("--data", required=True, help="data file: .parquet, .csv or .npz")
    t.add_argument("--schema", help="schema YAML (default: the data file's .schema.yaml sidecar)")
    t.add_argument("--config", help="hamnet_config.yaml (original framework format)")
    add_tier_argument(t)
    t.add_argument("--target", help="target column (default: the schema's)")
    t.add_argument("--epochs", type=int, help="override training.num_epochs")
    t.add_argument("--out", help="run directory (default: $HAMNET_OUTPUT_DIR/run-<time>)")
    t.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics (epoch, losses, epoch seconds, "
                                                    "samples/s) on this port while training (0: a free one)")
    _loop_arguments(t)
    g = t.add_argument_group("multi-process (multi-host) training; or set JAX_COORDINATOR_ADDRESS, "
                             "JAX_NUM_PROCESSES, JAX_PROCESS_ID")
    g.add_argument("--coordinator-address", help="host:port of process 0")
    g.add_argument("--num-processes", type=int)
    g.add_argument("--process-id", type=int)
    g.add_argument("--distributed", action="store_true",
                   help="join the job the cluster describes (SLURM, Open MPI, Kubernetes auto-detection)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="test metrics beside Ridge and gradient boosting baselines")
    e.add_argument("--run", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--no-baselines", action="store_true", help="skip the scikit-learn baselines")
    e.add_argument("--baseline-features", choices=("all-visits", "last-visit"), default="all-visits",
                   help="fit the baselines on every visit's features (default) or the last visit's only (faster on "
                        "wide data); fitted once per training split and kept in the run directory")
    e.add_argument("--baseline-subjects", type=int, default=20_000, metavar="N",
                   help="fit the baselines on at most N training subjects, a seeded sample of a larger split "
                        "(default 20,000: a flattened cohort-scale split does not fit in memory)")
    e.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    e.set_defaults(func=cmd_evaluate)

    add_cv_parser(sub)
    add_inference_parsers(sub)
    add_search_parser(sub)
    add_monitoring_parsers(sub)
    add_bench_parser(sub)
    add_pipeline_parser(sub)
    add_cache_parser(sub)

    _compression_parsers(sub)
    return p


def _compression_parsers(sub: argparse._SubParsersAction) -> None:
    """`prune`, `quantize` and `distill`: a trained run in, a derived run directory out."""
    def derived(name: str, help_text: str, precision_flag: str = "--precision") -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_text)
        q.add_argument("--run", required=True, help="trained run directory")
        q.add_argument("--data", required=True, help="the data file the run was trained on (same split)")
        q.add_argument("--out", required=True, help="new run directory to write")
        q.add_argument("--config", help=f"hamnet_config.yaml: its {name} section and training execution keys")
        _loop_arguments(q, precision_flag)
        return q

    pr = derived("prune", "prune + fine-tune a run (structured: compact it) into a new run")
    pr.add_argument("--method", help="magnitude, global_magnitude, gradient, snip, taylor, movement or structured")
    pr.add_argument("--sparsity", type=float, help="target sparsity in [0, 1) (pruning.target_sparsity)")
    pr.add_argument("--schedule", help="one_shot, linear or polynomial (pruning.pruning_schedule; gradual only)")
    pr.add_argument("--epochs", type=int, help="fine-tuning epochs (pruning.finetune_epochs)")
    pr.add_argument("--cycles", type=int, help="iterative prune -> fine-tune cycles (pruning.cycles)")
    pr.set_defaults(func=cmd_prune)
    qz = derived("quantize", "quantize a run (int8 PTQ / QAT / mixed, fp16, bf16) into a new run",
                 "--train-precision")
    qz.add_argument("--mode", help="dynamic, static, qat, weight_only or mixed (quantization.mode)")
    qz.add_argument("--precision", help="int8, fp16 or bf16 (quantization.precision)")
    qz.add_argument("--calibration", help="minmax or percentile (static mode)")
    qz.set_defaults(func=cmd_quantize)
    kd = derived("distill", "distill a run into a smaller student run (knowledge distillation)")
    kd.add_argument("--ratio", type=float, help="student / teacher parameters (distillation.compression_ratio, 0.25)")
    kd.add_argument("--method", help="soft_target, feature_matching, attention_transfer, relational, "
                                     "self_distillation or born_again (distillation.method)")
    kd.add_argument("--temperature", type=float, help="softening temperature of a classification head (4)")
    kd.add_argument("--alpha", type=float, help="weight of distillation vs the task loss (0.5)")
    kd.add_argument("--epochs", type=int, help="student training epochs (10)")
    kd.add_argument("--learning-rate", type=float, help="peak learning rate (2e-3)")
    kd.add_argument("--seed", type=int)
    kd.add_argument("--features", action="store_true", help="add FitNets feature matching")
    kd.add_argument("--attention", action="store_true", help="add attention transfer")
    kd.add_argument("--relational", action="store_true", help="add relational (RKD) distance + angle losses")
    kd.set_defaults(func=cmd_distill)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        refuse_output_over_input(args)
        code = args.func(args)
    except InputError as e:
        print(f"hamnet {args.command}: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk: the writer named its path and kept the last complete state
        if not (isinstance(e, DiskFullError) or is_disk_full(e)):
            raise
        where = "" if isinstance(e, DiskFullError) or not e.filename else f" ({e.filename})"
        print(f"hamnet {args.command}: error: {e}{where}", file=sys.stderr)
        return EX_IOERR
    return int(code or 0)  # a command may return a non-zero status of its own (drift --fail-on-drift)


if __name__ == "__main__":
    sys.exit(main())
