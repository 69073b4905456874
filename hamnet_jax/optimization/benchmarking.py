"""`HAMNetBenchmarkSuite`: the original framework's benchmarking facade.

    from hamnet_jax.optimization.benchmarking import BenchmarkConfig, BenchmarkType, HAMNetBenchmarkSuite

    bench_config = BenchmarkConfig(
        benchmark_types=[BenchmarkType.LATENCY, BenchmarkType.THROUGHPUT, BenchmarkType.MEMORY,
                         BenchmarkType.ACCURACY],
        num_iterations=50, batch_sizes=[1, 8, 16, 32], output_dir="benchmark_results",
        enable_profiling=True, monitor_hardware=True)
    benchmark_suite = HAMNetBenchmarkSuite("runs/main/fp32", bench_config)
    results = benchmark_suite.run_benchmarks("cohort.parquet")      # the run's data file
    summary = benchmark_suite.visualizer.generate_summary_report(results)

`model` is a run directory; `pruned=` / `distilled=` add the optimization chain's rows.
Thin: the work is `hamnet_jax.bench.suite.run_benchmarks` (what `hamnet bench` runs).
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any

from hamnet_jax.bench.report import markdown
from hamnet_jax.bench.suite import BenchSettings, run_benchmarks
from hamnet_jax.config import section_from_keywords
from hamnet_jax.config.sections import BenchmarkingSection

__all__ = ["BenchmarkConfig", "BenchmarkType", "HAMNetBenchmarkSuite"]


class BenchmarkType(enum.StrEnum):
    LATENCY = "latency"
    THROUGHPUT = "throughput"
    MEMORY = "memory"
    ACCURACY = "accuracy"
    SCALABILITY = "scalability"


def BenchmarkConfig(**keys: Any) -> BenchmarkingSection:  # noqa: N802 - the original framework's name
    """The `benchmarking:` section from keyword arguments (enums or their values), checked."""
    if "benchmark_types" in keys:
        keys["benchmark_types"] = [str(t.value if isinstance(t, enum.Enum) else t) for t in keys["benchmark_types"]]
    return section_from_keywords("benchmarking", keys, "BenchmarkConfig")


class BenchmarkVisualizer:
    """Summaries of a results dict (what `run_benchmarks` returns)."""

    def generate_summary_report(self, results: dict[str, Any]) -> dict[str, Any]:
        """Per model: size, batch-1 p50 latency, largest-batch throughput and test MAE, where
        measured; and the report as Markdown."""
        models = {}
        for m in results["models"]:
            rows = sorted((r for r in results["latency"] if r["model"] == m["name"]), key=lambda r: r["batch_size"])
            models[m["name"]] = {"backend": m["backend"], "size_mb": m["size_bytes"] / 1e6,
                                 "latency_ms": rows[0]["p50_ms"] if rows else None,  # the smallest batch's
                                 "throughput": rows[-1]["throughput"] if rows else None,  # the largest's
                                 "mae": m.get("accuracy", {}).get("mae")}
        return {"models": models, "not_measured": results["absent"], "markdown": markdown(results, [])}


class HAMNetBenchmarkSuite:
    def __init__(self, model: str | os.PathLike, config: BenchmarkingSection | None = None,
                 pruned: str | os.PathLike | None = None, distilled: str | os.PathLike | None = None) -> None:
        self.run_dir, self.config = Path(model), config or BenchmarkingSection()
        self.pruned, self.distilled = pruned, distilled
        self.visualizer = BenchmarkVisualizer()
        self.settings = BenchSettings.from_section(self.config)

    def run_benchmarks(self, test_data: str | os.PathLike) -> dict[str, Any]:
        """Measure on `test_data` (the run's data file: its test split gives accuracy);
        writes results.json, report.md and charts to `output_dir`."""
        return run_benchmarks(self.run_dir, test_data, self.config.output_dir, self.settings, self.pruned,
                              self.distilled)
