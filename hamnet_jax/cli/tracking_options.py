"""`--mlflow-uri` / `--mlflow-experiment` of the commands that log to MLflow (train, prune,
quantize, distill, search, pipeline), over the config's `monitoring.mlflow_uri` and
`monitoring.mlflow_experiment`."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from hamnet_jax.errors import InputError

RUN_FILES = ("summary.json", "config.yaml", "metrics.jsonl", "schema.yaml", "report.json", "report.md")


def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mlflow-uri", help="log this job to MLflow: a tracking server (http://HOST:5000) or store "
                                             "(file:DIR, sqlite:///FILE) (default monitoring.mlflow_uri; off)")
    parser.add_argument("--mlflow-experiment", help="the MLflow experiment (default monitoring.mlflow_experiment, "
                                                    "hamnet)")


def tracked_run(args: argparse.Namespace, config: Any, name: str, state_dir: Path,
                params: Mapping[str, Any]) -> Any:
    """The job's MLflow run (`tracking.mlflow_runs.TrackedRun`, its parameters logged), or None
    when tracking is off."""
    section = config.section("monitoring")
    uri = args.mlflow_uri or section.mlflow_uri
    if not uri:
        if args.mlflow_experiment:
            raise InputError("--mlflow-experiment names where runs are logged, and no --mlflow-uri (or "
                             "monitoring.mlflow_uri) turns logging on: give both or neither")
        return None
    from hamnet_jax.tracking.mlflow_runs import TrackedRun

    run = TrackedRun.open(uri, args.mlflow_experiment or section.mlflow_experiment, name, state_dir,
                          {"hamnet.command": args.command})
    run.log_params(params)
    return run


@contextlib.contextmanager
def finishing(run: Any) -> Iterator[Any]:
    """Mark the run FAILED when the job raises, FINISHED when it ends."""
    if run is None:
        yield None
        return
    try:
        yield run
    except BaseException:
        run.finish(failed=True)
        raise
    run.finish()


def log_run_directory(run: Any, out: Path, summary: Mapping[str, Any]) -> None:
    """A finished job's summary numbers and its files: summary, config, per-epoch metrics,
    plots, ONNX graphs."""
    run.remember(out)
    run.log_metrics(summary)
    run.log_artifacts(out / name for name in RUN_FILES)
    run.log_artifacts(sorted((out / "plots").glob("*.png")), "plots")
    run.log_artifacts(sorted(out.glob("*.onnx")), "onnx")


def tracked_job(args: argparse.Namespace, config: Any, out: Path, params: Mapping[str, Any],
                job: Callable[[Callable[..., None] | None], dict]) -> dict:
    """Run `job(on_epoch)` logged to MLflow when tracking is on: its parameters, each epoch's
    numbers (`on_epoch(record)`, or `on_epoch(stage, record)` for a compression's stages, as
    `stage/key`), then its summary and files; `job(None)` when off."""
    run = tracked_run(args, config, out.name, out, params)
    if run is None:
        return job(None)

    def on_epoch(*given: Any) -> None:
        stage, record = given if len(given) == 2 else ("", given[0])
        run.remember(out)  # (the job has made its directory by its first epoch)
        run.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record.get("epoch", 0)),
                        prefix=f"{stage}/" if stage else "")

    with finishing(run):
        summary = job(on_epoch)
        log_run_directory(run, out, summary)
    return summary
