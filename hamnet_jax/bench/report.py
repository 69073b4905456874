"""The benchmark report: `report.md` with the original documentation's tables ("Model
Optimization Results", "Inference Performance", "Deployment Scalability") filled with
the figures of one run, and PNG charts beside it. Everything is rendered from the
results dict (`results.json`), so the report can be regenerated from the file alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hamnet_jax.bench.models import ROWS
from hamnet_jax.io_atomic import write_atomic, write_text_atomic

MB = 1e6


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def optimization_table(results: dict[str, Any]) -> list[str]:
    types, largest = results["settings"]["types"], max(results["settings"]["batch_sizes"])
    smallest = min(results["settings"]["batch_sizes"])
    header = ["Optimization Technique", "Backend", "Model Size (MB)", "Params"]
    if "latency" in types:
        header.append(f"Latency (ms, batch {smallest} p50)")
    if "throughput" in types:
        header.append(f"Throughput (samples/s, batch {largest})")
    if "accuracy" in types:
        header += ["Test MAE (years)", "R²"]
    if "memory" in types:
        header.append("Warm-up memory (MB)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in results["models"]:
        cells = [m["name"], m["backend"], f"{m['size_bytes'] / MB:.3f}", f"{m['params']:,}"]
        if "latency" in types:
            cells.append(_fmt(latency_of(results, m["name"], smallest, "p50_ms")))
        if "throughput" in types:
            cells.append(_fmt(latency_of(results, m["name"], largest, "throughput"), ",.0f"))
        if "accuracy" in types:
            cells += [_fmt(m["accuracy"]["mae"], ".3f"), _fmt(m["accuracy"]["r2"], ".3f")]
        if "memory" in types:
            cells.append(_fmt(m["memory"]["warmup_rss_delta_mb"], ".1f"))
        lines.append("| " + " | ".join(cells) + " |")
    absent = results["absent"]
    lines += [f"\n*{name}*: not measured: {absent[name]}" for name in ROWS if name in absent]
    return lines


def latency_of(results: dict[str, Any], model: str, batch: int, key: str) -> float | None:
    """`key` (p50_ms, throughput, ...) of `model` at `batch` in a results dict's latency rows."""
    return next((r[key] for r in results["latency"] if r["model"] == model and r["batch_size"] == batch), None)


def inference_table(results: dict[str, Any]) -> list[str]:
    lines = ["| Model | Backend | Batch | p50 (ms) | p95 (ms) | p99 (ms) | Mean (ms) | Throughput (samples/s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results["latency"]:
        lines.append(f"| {r['model']} | {r['backend']} | {r['batch_size']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
                     f"| {r['p99_ms']:.2f} | {r['mean_ms']:.2f} | {r['throughput']:,.0f} |")
    return lines


def scalability_table(results: dict[str, Any]) -> list[str]:
    lines = ["| Concurrent Users | Avg. Latency (ms) | P95 Latency (ms) | Throughput (req/s) | Error Rate (%) |",
             "|---|---|---|---|---|"]
    for r in results["scalability"]["rows"]:
        lines.append(f"| {r['concurrency']} | {_fmt(r['mean_ms'])} | {_fmt(r['p95_ms'])} | {r['throughput']:,.0f} "
                     f"| {100 * r['error_rate']:.2f} |")
    return lines


def hardware_table(summary: dict[str, dict[str, float]]) -> list[str]:
    lines = ["| Series | Mean | Max |", "|---|---|---|"]
    lines += [f"| {k} | {v['mean']:.1f} | {v['max']:.1f} |" for k, v in sorted(summary.items())]
    return lines


def markdown(results: dict[str, Any], charts: list[Path]) -> str:
    machine, settings = results["machine"], results["settings"]
    out = ["# HAMNet benchmark report", "",
           f"Measured in one run on {machine['cpu']} ({machine['cpu_count']} cores), JAX {machine['jax']} on "
           f"{machine['device']}, {results['started']}. Baseline run `{results['run']}`, data `{results['data']}` "
           f"({results['test_subjects']} test subjects). {settings['iterations']} timed calls per model and batch "
           "size, models timed interleaved; every model takes raw inputs and runs deterministically.", "",
           "## Model Optimization Results", "", *optimization_table(results), ""]
    if results["latency"]:
        out += ["## Inference Performance", "", *inference_table(results), ""]
    if results.get("scalability"):
        s = results["scalability"]
        out += ["## Deployment Scalability", "",
                f"`hamnet serve` with `{s['model']}` ({s['backend']}), closed-loop gRPC clients on the same machine, "
                f"{s['duration_s']:g} s per level, one subject per request.", "", *scalability_table(results), ""]
    if results.get("hardware"):
        out += ["## Hardware", "", *hardware_table(results["hardware"]), ""]
    if results.get("profile"):
        out += ["## Profile", "", f"`jax.profiler` trace of the baseline's calls in `{results['profile']['dir']}` "
                f"({len(results['profile']['files'])} file(s)): `tensorboard --logdir {results['profile']['dir']}` "
                "(profile plugin) or XProf.", ""]
    out += [f"![{c.stem}]({c.name})" for c in charts]
    return "\n".join(out) + "\n"


def _save(fig: Any, path: Path) -> Path:
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=110), "wb")
    return path


def charts(results: dict[str, Any], out: Path) -> list[Path]:
    """latency_by_batch.png, accuracy_vs_size.png and scalability.png (as measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if results["latency"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for m in results["models"]:
            rows = [r for r in results["latency"] if r["model"] == m["name"]]
            ax.plot([r["batch_size"] for r in rows], [r["p50_ms"] for r in rows], "o-", label=m["name"])
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="p50 latency (ms)",
               title="latency by batch size")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, out / "latency_by_batch.png"))
        plt.close(fig)
    if all(m.get("accuracy") for m in results["models"]):
        fig, ax = plt.subplots(figsize=(6, 4))
        for m in results["models"]:
            ax.scatter(m["size_bytes"] / MB, m["accuracy"]["mae"], s=40)
            ax.annotate(m["name"], (m["size_bytes"] / MB, m["accuracy"]["mae"]), fontsize=8)
        ax.set(xscale="log", xlabel="model size (MB)", ylabel="test MAE (years)", title="accuracy vs size")
        fig.tight_layout()
        written.append(_save(fig, out / "accuracy_vs_size.png"))
        plt.close(fig)
    if results.get("scalability"):
        rows = results["scalability"]["rows"]
        fig, ax = plt.subplots(figsize=(6, 4))
        levels = [r["concurrency"] for r in rows]
        lines = ax.plot(levels, [r["throughput"] for r in rows], "o-", label="throughput (req/s)")
        ax.set(xscale="log", xlabel="concurrent clients", ylabel="requests/s", title="deployment scalability")
        twin = ax.twinx()
        lines += twin.plot(levels, [r["p95_ms"] or 0 for r in rows], "s--", color="tab:red", label="p95 latency (ms)")
        twin.set_ylabel("p95 latency (ms)")
        ax.legend(handles=lines, fontsize=8, loc="upper left")
        fig.tight_layout()
        written.append(_save(fig, out / "scalability.png"))
        plt.close(fig)
    return written


def write_report(results: dict[str, Any], out: Path) -> Path:
    """report.md and its charts in `out`, from the results alone."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.md"
    write_text_atomic(path, markdown(results, charts(results, out)))
    return path
