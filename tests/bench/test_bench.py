"""The benchmark suite: timing statistics, hardware monitoring, profiler traces, and
`hamnet bench` end to end on a tiny run (one run shared by the report assertions)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from hamnet_jax.bench.hardware import HardwareMonitor
from hamnet_jax.bench.memory import host_rss_bytes, peak_rss_bytes
from hamnet_jax.bench.profiling import profile_trace, trace_files
from hamnet_jax.bench.report import markdown
from hamnet_jax.cli import main
from hamnet_jax.evaluation.timing import LatencyStats, interleaved


def test_latency_stats_are_the_percentiles_of_the_calls():
    seconds = np.random.default_rng(0).exponential(0.004, 500)
    stats = LatencyStats.of(seconds)
    p50, p95, p99 = np.percentile(seconds * 1e3, [50, 95, 99])
    assert (stats.p50, stats.p95, stats.p99) == pytest.approx((p50, p95, p99))
    assert stats.calls == 500 and stats.throughput(8) == pytest.approx(8 / seconds.mean())
    with pytest.raises(ValueError, match="no timed calls"):
        LatencyStats.of([])


def test_interleaved_warms_up_then_alternates_the_calls():
    order: list[str] = []
    stats = interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, reps=3, warmup=2)
    assert order == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert stats["a"].calls == stats["b"].calls == 3


def test_hardware_monitor_samples_cpu_and_this_process_memory():
    with HardwareMonitor(interval=0.05) as monitor:
        _ = np.ones((2000, 2000)) @ np.ones((2000, 2000))
        deadline = time.monotonic() + 60  # (only a hang reaches it)
        while len(monitor.samples) < 2 and time.monotonic() < deadline:  # sampled on its own thread
            time.sleep(0.01)
    summary = monitor.summary()
    assert len(monitor.samples) >= 2
    assert 0 <= summary["cpu_percent"]["mean"] <= 100
    assert summary["rss_mb"]["max"] > 10 and host_rss_bytes() > 10 * 2**20
    # (getrusage and /proc count pages a little differently: the same magnitude, not equal)
    assert 0.5 < peak_rss_bytes() / (summary["rss_mb"]["max"] * 2**20) < 2
    with pytest.raises(ValueError, match="interval must be > 0"):
        HardwareMonitor(interval=0)


def test_profile_trace_writes_a_trace_tensorboard_reads(tmp_path):
    import jax
    import jax.numpy as jnp

    with profile_trace(tmp_path / "trace") as trace_dir:
        jax.jit(lambda x: x * 2 + 1)(jnp.ones(8)).block_until_ready()
    files = trace_files(trace_dir)
    assert files and files[0].stat().st_size > 0


@pytest.fixture(scope="module")
def bench_out(tiny_run, tiny_cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "--run", str(tiny_run), "--data", str(tiny_cohort[0]), "--out", str(out),
                 "--batch-sizes", "1,4", "--iterations", "3", "--concurrency", "1,2", "--duration", "0.5",
                 "--no-tensorrt"]) in (None, 0)
    return out


def test_bench_report_has_the_original_tables_measured(bench_out):
    report = (bench_out / "report.md").read_text()
    results = json.loads((bench_out / "results.json").read_text())
    for heading in ("## Model Optimization Results", "## Inference Performance", "## Deployment Scalability"):
        assert heading in report
    assert "| Optimization Technique | Backend | Model Size (MB) |" in report
    assert "| Concurrent Users | Avg. Latency (ms) | P95 Latency (ms) | Throughput (req/s) | Error Rate (%) |" in report
    names = [m["name"] for m in results["models"]]
    assert names == ["Baseline HAMNet", "+ Quantization (INT8)"]
    assert set(results["absent"]) == {"+ Pruning", "+ Knowledge Distill.", "+ TensorRT Opt."}
    assert "--no-tensorrt" in results["absent"]["+ TensorRT Opt."]
    # the int8 graph's size is its file's; its accuracy close to the float model's
    int8 = results["models"][1]
    assert int8["size_bytes"] == Path(int8["graph"]).stat().st_size
    base_mae = results["models"][0]["accuracy"]["mae"]
    assert abs(int8["accuracy"]["mae"] / base_mae - 1) < 0.05
    # every model at every batch size, percentiles ordered
    assert [(r["model"], r["batch_size"]) for r in results["latency"]] == [(n, b) for b in (1, 4) for n in names]
    assert all(r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] and r["throughput"] > 0 for r in results["latency"])
    rows = results["scalability"]["rows"]
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert all(r["requests"] > 0 and r["error_rate"] == 0 for r in rows)
    assert results["hardware"]["rss_mb"]["max"] > 0


def test_bench_report_is_regenerated_from_its_results_file(bench_out):
    """Every number in the report comes from results.json: rendering the file again gives the report."""
    results = json.loads((bench_out / "results.json").read_text())
    charts = [bench_out / n for n in ("latency_by_batch.png", "accuracy_vs_size.png", "scalability.png")]
    assert all(c.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for c in charts)
    assert markdown(results, charts) == (bench_out / "report.md").read_text()


@pytest.mark.parametrize("flags, message", [
    (["--types", "latency,speed"], "benchmark types ['latency', 'speed']: expected some of"),
    (["--batch-sizes", "0,8"], "--batch-sizes '0,8': expected positive integers"),
    (["--pruned", "no-such-run"], "--pruned no-such-run: not a run directory"),
])
def test_bench_names_bad_input(tiny_run, tiny_cohort, tmp_path, capsys, flags, message):
    assert main(["bench", "--run", str(tiny_run), "--data", str(tiny_cohort[0]), "--out", str(tmp_path),
                 *flags]) == 2
    assert message in capsys.readouterr().err


def test_benchmark_suite_facade(tiny_run, tiny_cohort, tmp_path):
    from hamnet_jax.optimization.benchmarking import BenchmarkConfig, BenchmarkType, HAMNetBenchmarkSuite

    config = BenchmarkConfig(benchmark_types=[BenchmarkType.LATENCY, BenchmarkType.ACCURACY], num_iterations=2,
                             batch_sizes=[1, 2], output_dir=str(tmp_path), monitor_hardware=False)
    suite = HAMNetBenchmarkSuite(tiny_run, config)
    results = suite.run_benchmarks(tiny_cohort[0])
    assert results["scalability"] is None and results["hardware"] is None
    assert {r["batch_size"] for r in results["latency"]} == {1, 2}
    summary = suite.visualizer.generate_summary_report(results)
    assert summary["models"]["Baseline HAMNet"]["mae"] == results["models"][0]["accuracy"]["mae"]
    assert "## Deployment Scalability" not in summary["markdown"]
    assert (tmp_path / "report.md").exists()
    with pytest.raises(Exception, match="benchmarking.benchmark_types"):
        BenchmarkConfig(benchmark_types=["speed"])
