"""The benchmark suite in one call: build the optimization chain's models from runs, measure
them on this machine in one run, serve the most optimized one under load, and write
`results.json` (atomically) and the report.

    results = run_benchmarks("runs/main/fp32", "cohort.parquet", "benchmarks",
                             BenchSettings.from_section(batch_sizes=(1, 32, 256)), pruned="runs/pruned",
                             distilled="runs/student")

What is measured follows `settings.types` (the `benchmarking:` section's
`benchmark_types`): latency and throughput (per model and batch size), memory (host
memory each model took to warm up; device memory where the backend reports it), accuracy
(test split of the run's own split of `data`) and scalability (the service under load).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from hamnet_jax.bench.hardware import HardwareMonitor
from hamnet_jax.bench.measure import accuracy, latency_table, warm_memory
from hamnet_jax.bench.memory import peak_rss_bytes
from hamnet_jax.bench.models import BenchModel, optimization_models
from hamnet_jax.bench.profiling import profile_trace, trace_files
from hamnet_jax.bench.report import write_report
from hamnet_jax.config.sections import BenchmarkingSection
from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import write_json_atomic
from hamnet_jax.repository.layout import add_to_repository
from hamnet_jax.terminal_progress import progress_bar

TYPES = ("latency", "throughput", "memory", "accuracy", "scalability")


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """What one benchmark run measures; `from_section` takes the `benchmarking:` section's
    values (and its defaults), with any of them overridden."""

    types: tuple[str, ...]
    iterations: int
    batch_sizes: tuple[int, ...]
    concurrency: tuple[int, ...]
    duration_s: float
    profile: bool
    monitor_hardware: bool
    tensorrt: bool = True

    @classmethod
    def from_section(cls, section: BenchmarkingSection | None = None, **overrides: Any) -> BenchSettings:
        c = section or BenchmarkingSection()
        values = {"types": tuple(c.benchmark_types), "iterations": c.num_iterations,
                  "batch_sizes": tuple(c.batch_sizes), "concurrency": tuple(c.concurrency),
                  "duration_s": c.load_duration_s, "profile": c.enable_profiling,
                  "monitor_hardware": c.monitor_hardware}
        return cls(**{**values, **{k: v for k, v in overrides.items() if v is not None}})

    def __post_init__(self) -> None:
        unknown = [t for t in self.types if t not in TYPES]
        if unknown or not self.types:
            raise InputError(f"benchmark types {list(self.types)}: expected some of {list(TYPES)}")
        for name in ("batch_sizes", "concurrency"):
            values = getattr(self, name)
            if not values or any(int(v) < 1 for v in values):
                raise InputError(f"benchmark {name} {list(values)}: expected positive integers")
        if self.iterations < 1 or self.duration_s <= 0:
            raise InputError(f"benchmark iterations {self.iterations} / duration {self.duration_s} s: expected > 0")


def machine() -> dict[str, Any]:
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "device": f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind})"}


def run_test_split(run: Path, data: Path) -> Any:
    """The run's test split of `data` (the split the run was trained with)."""
    from hamnet_jax.data.dataset import load_cohort, split_cohort
    from hamnet_jax.runs.run_dir import load_run

    loaded = load_run(run)
    test = split_cohort(load_cohort(data, loaded.schema, loaded.config.data), loaded.config.data)["test"]
    if test.num_subjects == 0:
        raise InputError(f"{data}: the run's split leaves no test subject")
    return test


def serve_under_load(model: BenchModel, out: Path, settings: BenchSettings) -> dict[str, Any]:
    """`model` in a `hamnet serve` process (from a temporary repository under `out`) under
    closed-loop load at each concurrency level."""
    try:  # (the load generator needs the serving extra; nothing else here does)
        from hamnet_jax.bench.scalability import scalability_rows
        from hamnet_jax.client.service_process import serve_process, stop_process
    except ImportError as err:
        raise InputError(f"benchmark type scalability serves the model under load and needs grpcio ({err}): "
                         "pip install 'hamnet-jax[serving]', or leave scalability out of benchmark_types") from None
    precision = model.backend.split("/", 1)[1]
    options = {"backend": model.backend.split("/", 1)[0], "precision_mode": precision,
               "mc_samples": model.raw.num_samples, "batch_size": max(settings.batch_sizes),
               "dynamic_batching": True}
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        root = Path(tmp) / "repository"
        add_to_repository(root, "hamnet", model.run_dir, model.graph, options)
        process, url = serve_process(root, out / "server.log")
        try:
            rows = scalability_rows(url, "hamnet", model.raw, settings.concurrency, settings.duration_s)
        finally:
            stop_process(process)
    return {"model": model.name, "backend": model.backend, "duration_s": settings.duration_s, "rows": rows}


def _served(models: list[BenchModel], out: Path, settings: BenchSettings) -> dict[str, Any]:
    """The most optimized model a server loads (the last with an ONNX graph, else the
    baseline on the JAX backend) under load."""
    model = next((m for m in reversed(models) if m.graph is not None and m.backend.startswith("onnxruntime")),
                 models[0])
    return serve_under_load(model, out, settings)


def run_benchmarks(run: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike,
                   settings: BenchSettings | None = None, pruned: str | os.PathLike | None = None,
                   distilled: str | os.PathLike | None = None, progress: bool = False) -> dict[str, Any]:
    """Measure the run and its optimized forms (`settings`), write `out/results.json` and the
    report; `progress`: bars over the models and batch sizes on a terminal."""
    from hamnet_jax.inference.raw_inputs import cohort_to_raw, random_raw

    settings = settings or BenchSettings.from_section()
    run, data, out = Path(run), Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    monitor = HardwareMonitor() if settings.monitor_hardware else None
    if monitor:
        monitor.start()
    try:
        test = run_test_split(run, data)
        models, absent = optimization_models(run, out / "models", settings.batch_sizes,
                                             Path(pruned) if pruned else None,
                                             Path(distilled) if distilled else None, settings.tensorrt)
        base = models[0].raw
        request = random_raw(base.spec, base.preprocessor, max(settings.batch_sizes), seed=0)
        test_request = cohort_to_raw(test, base.spec)
        rows = []
        for m in progress_bar(models, len(models), "bench: memory and accuracy", "model", progress):
            row = {"name": m.name, "backend": m.backend, "size_bytes": m.size_bytes, "params": m.params,
                   "run_dir": str(m.run_dir), "graph": str(m.graph) if m.graph else None,
                   "memory": warm_memory(m, request, settings.batch_sizes)}
            if "accuracy" in settings.types:
                row["accuracy"] = accuracy(m, test_request, test.targets)
            rows.append(row)
        timed = {"latency", "throughput"} & set(settings.types)
        latency = latency_table(models, request, settings.batch_sizes, settings.iterations, progress) if timed else []
        profile = None
        if settings.profile:
            with profile_trace(out / "profile") as trace_dir:
                latency_table(models[:1], request, settings.batch_sizes, min(settings.iterations, 10))
            profile = {"dir": str(trace_dir), "files": [str(p) for p in trace_files(trace_dir)]}
        scalability = _served(models, out, settings) if "scalability" in settings.types else None
    finally:
        if monitor:
            monitor.stop()
    results = {"started": started, "machine": machine(),
               "run": str(run), "data": str(data), "test_subjects": int(test.num_subjects),
               "settings": dataclasses.asdict(settings), "models": rows, "absent": absent, "latency": latency,
               "scalability": scalability, "profile": profile,
               "hardware": monitor.summary() if monitor else None, "peak_rss_mb": peak_rss_bytes() / 2**20}
    write_json_atomic(out / "results.json", results)
    write_report(results, out)
    return results
