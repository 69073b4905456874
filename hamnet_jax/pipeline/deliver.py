"""The pipeline's last stages: the model repository `hamnet serve --repository` loads, and
(with `enable_monitoring`) what watches it in production.

The repository holds one version of `pipeline.model_name`: the benchmark stage's choice
(else the first export, else the chain's model on JAX), copied so the directory stands
alone, with the inference options it was measured with. The stage loads it as the server
does and answers the test split's first subjects, so a repository that does not serve
fails the pipeline here. Monitoring writes Prometheus alert rules beside it (thresholds
from the `monitoring:` section) and a drift report of the data against the served run's
training profile: the reference a live service's drift is read against.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hamnet_jax.bench.suite import run_test_split
from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import write_json_atomic
from hamnet_jax.pipeline.stages import Context, Done, current_run, served_mc_samples
from hamnet_jax.repository.layout import add_to_repository


CHOSEN = ("backend", "precision_mode")  # inference keys the pipeline decides (the fastest measured)


def served_choice(ctx: Context, done: Done) -> tuple[Path, Path | None, str, str]:
    """(run, graph or None, backend, precision) of the model to serve."""
    if "bench" in done:
        results = json.loads(Path(done["bench"]["results"]).read_text())
        row = next(r for r in results["models"] if r["name"] == results["served"])
        backend, precision = row["backend"].split("/", 1)
        return Path(row["run_dir"]), Path(row["graph"]) if row["graph"] else None, backend, precision
    if "export" in done:
        first = done["export"]["exports"][0]
        backend = "tensorrt" if first["format"].startswith("tensorrt") else "onnxruntime"
        return Path(done["export"]["run"]), Path(first["path"]), backend, first["precision"]
    return current_run(done), None, "jax", "fp32"


def stage_repository(ctx: Context, done: Done) -> dict[str, Any]:
    """The served model in a model repository, checked as a client sees it: `hamnet serve`
    started on the repository as its own process answers 8 test subjects."""
    try:
        from hamnet_jax.client.client import HAMNetClient
    except ImportError as e:  # (grpcio, tritonclient)
        raise InputError(f"the repository stage checks the served model over gRPC and needs the serving extra "
                         f"(pip install 'hamnet-jax[serving]'): {e}") from None
    from hamnet_jax.client.service_process import serve_process, stop_process
    from hamnet_jax.inference.raw_inputs import RawInputSpec, cohort_to_raw
    from hamnet_jax.runs.run_dir import load_run

    name = ctx.config.section("pipeline").model_name
    run, graph, backend, precision = served_choice(ctx, done)
    # the inference section's serving keys as given; the backend and precision are the benchmark's choice
    given = {k: getattr(ctx.config.section("inference"), k) for k in ctx.config.given.get("inference", ())
             if k not in CHOSEN}
    options = {"batch_size": max(ctx.config.section("benchmarking").batch_sizes), **given, "backend": backend,
               "precision_mode": precision, "mc_samples": served_mc_samples(ctx)}
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
    root = ctx.stage_dir("repository")
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    add_to_repository(staging, name, run, graph, options, copy=True)
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)  # a crash leaves the staging copy, never half a repository
    served_run = load_run(root / name / "1")
    test = run_test_split(run, ctx.data)
    request = {k: v[:8] for k, v in cohort_to_raw(test, RawInputSpec.of(served_run.preprocessor,
                                                                         served_run.config.data.max_visits)).items()}
    process, url = serve_process(root, root.with_name("repository_server.log"))
    try:
        with HAMNetClient(url, model=name) as client:
            answer = client.predict(request)
    finally:
        stop_process(process)
    prediction = np.asarray(answer["prediction"], dtype=np.float64)
    return {"repository": str(root), "model": name, "version": "1", "run": str(run),
            "graph": str(graph) if graph else None, "options": options,
            "check": {"subjects": int(prediction.size), "mae": float(np.abs(prediction - test.targets[:8]).mean())}}


def stage_monitoring(ctx: Context, done: Done) -> dict[str, Any]:
    from hamnet_jax.monitoring.alerts import default_rules, write_rule_file
    from hamnet_jax.monitoring.drift import DriftThresholds, max_psi
    from hamnet_jax.monitoring.drift_check import check_run_drift

    m = ctx.config.section("monitoring")
    out = ctx.stage_dir("monitoring")
    out.mkdir(parents=True, exist_ok=True)
    rules = write_rule_file(default_rules(m.alert_latency_p95_ms / 1e3, m.alert_error_rate, m.alert_drift_psi),
                            out / "alerts.yml")
    run = Path(done["repository"]["run"]) if "repository" in done else current_run(done)
    report = check_run_drift(run, ctx.data, thresholds=DriftThresholds(psi=m.alert_drift_psi))
    write_json_atomic(out / "drift.json", report)
    return {"alert_rules": str(rules), "drift": str(out / "drift.json"), "max_psi": float(max_psi(report))}
