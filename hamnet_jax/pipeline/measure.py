"""The pipeline's benchmark stage: every model of the chain, and each export of the last,
measured side by side on this machine in one run (accuracy on the test split; latency and
throughput at each `benchmarking.batch_sizes`, interleaved), with the inference section's
MC-dropout samples (the quick preset: deterministic). "+ All" is the served model: the
fastest at the largest batch of every model measured (the chain's and the last one's
exports) among those within `pipeline.accuracy_tolerance` of the baseline's test MAE, so
a stage that costs speed on this machine (int8 emulated where the CPU lacks fast int8
kernels) is left out of what is served rather than imposed on it.

`results.json` has the shape of `hamnet bench`'s (models, latency, settings), so its
tables render the same way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from hamnet_jax.bench.hardware import HardwareMonitor
from hamnet_jax.bench.measure import accuracy, latency_table, warm_memory
from hamnet_jax.bench.models import graph_model, jax_model
from hamnet_jax.bench.profiling import profile_trace, trace_files
from hamnet_jax.bench.report import latency_of
from hamnet_jax.bench.suite import BenchSettings, machine, run_test_split, serve_under_load
from hamnet_jax.io_atomic import write_json_atomic
from hamnet_jax.pipeline.stages import MODEL_STAGES, Context, Done, current_run, served_mc_samples


def choose_served(rows: list[dict[str, Any]], latency: list[dict[str, Any]], batch: int,
                  tolerance: float) -> str:
    """The fastest model at `batch` whose test MAE is within `tolerance` (relative) of the
    baseline's (the first row); when none is, the fastest of all."""
    mae = {r["name"]: r["accuracy"]["mae"] for r in rows if "accuracy" in r}
    names = [r["name"] for r in rows]
    allowed = [n for n in names if n not in mae or mae[n] <= mae[names[0]] * (1 + tolerance)] or names
    return max(allowed, key=lambda n: latency_of({"latency": latency}, n, batch, "throughput"))


def stage_bench(ctx: Context, done: Done) -> dict[str, Any]:
    """Measure, with the machine's CPU / memory / GPU sampled meanwhile when
    `benchmarking.monitor_hardware` says so."""
    settings = BenchSettings.from_section(ctx.config.section("benchmarking"))
    monitor = HardwareMonitor() if settings.monitor_hardware else None
    if monitor:
        monitor.start()
    try:
        results = _measure(ctx, done, settings)
    finally:
        if monitor:
            monitor.stop()
    results["hardware"] = monitor.summary() if monitor else None
    out = ctx.stage_dir("bench")
    write_json_atomic(out / "results.json", results)
    return {"results": str(out / "results.json"), "served": results["served"]}


def _measure(ctx: Context, done: Done, settings: BenchSettings) -> dict[str, Any]:
    from hamnet_jax.inference.raw_inputs import cohort_to_raw, random_raw

    types = set(settings.types)
    batches, mc = tuple(settings.batch_sizes), served_mc_samples(ctx)
    models = [jax_model(done[s]["row"], Path(done[s]["run"]), batches, mc) for s in MODEL_STAGES if s in done]
    last = models[-1]
    options = ctx.config.section("inference")
    models += [graph_model(f"export {e['format']}", last, Path(e["path"]), e["format"], e["precision"], e["bytes"],
                           batches, options) for e in done.get("export", {}).get("exports", [])]
    test = run_test_split(current_run(done), ctx.data)
    request = random_raw(last.raw.spec, last.raw.preprocessor, max(batches), seed=0)
    rows = []
    for m in models:
        row = {"name": m.name, "backend": m.backend, "size_bytes": m.size_bytes, "params": m.params,
               "run_dir": str(m.run_dir), "graph": str(m.graph) if m.graph else None}
        if "memory" in types:
            row["memory"] = warm_memory(m, request, batches)
        if "accuracy" in types:
            row["accuracy"] = accuracy(m, cohort_to_raw(test, m.raw.spec), test.targets)
        rows.append(row)
    timed = bool({"latency", "throughput"} & types)
    latency = latency_table(models, request, batches, settings.iterations) if timed else []
    tolerance = ctx.config.section("pipeline").accuracy_tolerance
    served = choose_served(rows, latency, max(batches), tolerance) if timed else models[-1].name
    out = ctx.stage_dir("bench")
    out.mkdir(parents=True, exist_ok=True)
    chosen = next(m for m in models if m.name == served)
    profile = None
    if settings.profile:  # a jax.profiler trace (TensorBoard) of the served model's calls
        with profile_trace(out / "profile") as trace_dir:
            latency_table([chosen], request, batches, min(settings.iterations, 10))
        profile = {"model": served, "dir": str(trace_dir), "files": [str(p) for p in trace_files(trace_dir)]}
    scalability = serve_under_load(chosen, out, settings) if "scalability" in types else None
    return {"machine": machine(), "data": str(ctx.data), "test_subjects": int(test.num_subjects),
            "mc_samples": mc, "settings": dataclasses.asdict(settings), "models": rows, "absent": {},
            "latency": latency, "scalability": scalability, "profile": profile, "served": served}
