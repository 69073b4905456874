"""The pipeline's report, rendered from the files its stages wrote and nothing else:
`report.md`, `report.json` and PNG charts in the pipeline's directory.

The table has the shape of the original documentation's "Model Optimization Results":
one row per model of the chain (baseline, + NAS, + Knowledge Distill., + Pruning,
+ Quantization) and "+ All", the served model: the fastest measured model (chain or export)
within the accuracy tolerance of the baseline (hamnet_jax/pipeline/measure.py). With the
benchmark stage every figure is its measurement on this machine
(`bench/results.json`); without it, size and speed are "not measured" and the MAE is each
run's own test-split figure (`<stage>/stage.json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hamnet_jax.bench.report import latency_of
from hamnet_jax.io_atomic import write_atomic, write_json_atomic, write_text_atomic
from hamnet_jax.pipeline.stages import MODEL_STAGES, STAGES

MB = 1e6
THROUGHPUT_TARGET = 4.0  # the bar: the final model >= 4x the baseline's throughput ...


def _stages(out: Path) -> dict[str, dict[str, Any]]:
    """Every finished stage's record, in pipeline order."""
    return {name: json.loads((out / name / "stage.json").read_text()) for name in STAGES
            if (out / name / "stage.json").exists()}


def _fmt(value: Any, spec: str) -> str:
    return "not measured" if value is None else format(value, spec)


def table_rows(out: Path) -> list[dict[str, Any]]:
    """The table's rows, each a dict of its figures (None: not measured)."""
    stages = _stages(out)
    bench = json.loads(Path(stages["bench"]["outputs"]["results"]).read_text()) if "bench" in stages else None
    rows = []
    chain = [stages[s]["outputs"] for s in MODEL_STAGES if s in stages]
    names = [(c["row"], c["row"]) for c in chain]
    if bench is not None:
        names.append(("+ All (served: " + bench["served"] + ")", bench["served"]))
    for label, name in names:
        row: dict[str, Any] = {"technique": label, "model": name}
        if bench is not None:
            m = next(m for m in bench["models"] if m["name"] == name)
            small, large = min(bench["settings"]["batch_sizes"]), max(bench["settings"]["batch_sizes"])
            row.update(backend=m["backend"], size_mb=m["size_bytes"] / MB, params=m["params"],
                       latency_batch=small, latency_ms=latency_of(bench, name, small, "p50_ms"),
                       throughput_batch=large, throughput=latency_of(bench, name, large, "throughput"),
                       mae=m.get("accuracy", {}).get("mae"), r2=m.get("accuracy", {}).get("r2"))
        else:
            test = next(c for c in chain if c["row"] == name)["test"]
            row.update(backend="jax", size_mb=None, params=None, latency_batch=None, latency_ms=None,
                       throughput_batch=None, throughput=None, mae=test.get("mae"), r2=test.get("r2"))
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["speedup"] = (row["throughput"] / base["throughput"]) if row["throughput"] and base["throughput"] else None
        row["mae_change"] = (row["mae"] / base["mae"] - 1) if row["mae"] is not None and base["mae"] else None
    return rows


def table_markdown(rows: list[dict[str, Any]]) -> list[str]:
    b1 = rows[0]["latency_batch"]
    bn = rows[0]["throughput_batch"]
    header = ["Optimization Technique", "Backend", "Model Size (MB)", "Params",
              f"Latency (ms, batch {b1 or '-'} p50)", f"Throughput (samples/s, batch {bn or '-'})", "Speed-up",
              "Test MAE (years)", "vs baseline", "R²"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["technique"], r["backend"], _fmt(r["size_mb"], ".3f"),
                 "not measured" if r["params"] is None else f"{r['params']:,}", _fmt(r["latency_ms"], ".2f"),
                 _fmt(r["throughput"], ",.0f"), _fmt(r["speedup"], ".2f") + ("x" if r["speedup"] else ""),
                 _fmt(r["mae"], ".3f"), _fmt(r["mae_change"], "+.2%"), _fmt(r["r2"], ".3f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary(out: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    stages = _stages(out)
    identity = json.loads((out / "pipeline.json").read_text())
    tolerance = identity["config"].get("pipeline", {}).get("accuracy_tolerance", 0.02)
    final = rows[-1]
    met = None
    if final["speedup"] is not None and final["mae_change"] is not None:
        met = final["speedup"] >= THROUGHPUT_TARGET and final["mae_change"] <= tolerance
    return {"final": final, "baseline": rows[0], "speedup": final["speedup"], "mae_change": final["mae_change"],
            "target": {"throughput_x": THROUGHPUT_TARGET, "mae_tolerance": tolerance, "met": met},
            "stage_seconds": {k: v["seconds"] for k, v in stages.items()},
            "total_seconds": sum(v["seconds"] for v in stages.values()),
            "repository": stages.get("repository", {}).get("outputs", {}).get("repository")}


def _plot(path: Path, draw: Any) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    draw(ax)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=110), "wb")
    plt.close(fig)
    return path


def search_points(nas: dict[str, Any]) -> tuple[dict[int, list[tuple[float, float]]], list[tuple[float, float]]]:
    """The NAS stage's (cost, accuracy) points: every trial's result at each budget it
    reached (by budget; records written before the stage kept them: none), and the
    full-budget Pareto front in cost order."""
    x_name, y_name = nas["objectives"][1], nas["objectives"][0]
    by_budget: dict[int, list[tuple[float, float]]] = {}
    for r in nas.get("all", []):
        by_budget.setdefault(r["budget"], []).append((r["objectives"][x_name], r["objectives"][y_name]))
    front = sorted((p["objectives"][x_name], p["objectives"][y_name]) for p in nas["pareto_front"])
    return by_budget, front


def charts(out: Path, rows: list[dict[str, Any]]) -> list[Path]:
    stages = _stages(out)
    paths = []
    nas = stages.get("nas", {}).get("outputs")
    if nas and len(nas["objectives"]) >= 2:
        x_name, y_name = nas["objectives"][1], nas["objectives"][0]

        def front(ax: Any) -> None:
            by_budget, pts = search_points(nas)
            for budget, results in sorted(by_budget.items()):
                ax.scatter([p[0] for p in results], [p[1] for p in results], s=22, alpha=0.6,
                           label=f"trials' results at {budget} epoch{'s' if budget > 1 else ''}")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "k-o", mfc="none", label="Pareto front")
            chosen = nas["chosen"]["objectives"]
            ax.plot([chosen[x_name]], [chosen[y_name]], "r*", markersize=14, label="chosen")
            ax.set_xlabel(x_name)
            ax.set_ylabel(y_name)
            full = nas["full_budget"]
            ax.set_title(f"NAS: every trial and the Pareto front ({nas['trials']} trials, full budget {full} "
                         f"epoch{'s' if full > 1 else ''})")
            ax.legend()
        paths.append(_plot(out / "pareto_front.png", front))
    measured = [r for r in rows if r["size_mb"] is not None and r["mae"] is not None]
    if measured:
        def size(ax: Any) -> None:
            for r in measured:
                ax.scatter(r["size_mb"], r["mae"])
                ax.annotate(r["technique"], (r["size_mb"], r["mae"]), fontsize=8)
            ax.set_xlabel("model size (MB)")
            ax.set_ylabel("test MAE (years)")
            ax.set_title("Accuracy vs size")
        paths.append(_plot(out / "accuracy_vs_size.png", size))
    timed = [r for r in rows if r["latency_ms"] is not None]
    if timed:
        def latency(ax: Any) -> None:
            labels = [r["technique"] for r in timed]
            ax.barh(labels, [r["latency_ms"] for r in timed])
            ax.invert_yaxis()
            ax.set_xlim(0, 1.5 * max(r["latency_ms"] for r in timed))  # room for the throughput labels
            ax.set_xlabel(f"p50 latency at batch {timed[0]['latency_batch']} (ms)")
            for i, r in enumerate(timed):
                ax.annotate(f" {r['throughput']:,.0f}/s at batch {r['throughput_batch']}",
                            (r["latency_ms"], i), va="center", fontsize=8)
            ax.set_title("Latency (and throughput)")
        paths.append(_plot(out / "latency.png", latency))
    return paths


def markdown(out: Path, rows: list[dict[str, Any]], result: dict[str, Any], pngs: list[Path]) -> str:
    stages = _stages(out)
    lines = ["# HAMNet optimization pipeline", "", "## Model Optimization Results", ""]
    bench = stages.get("bench")
    if bench:
        results = json.loads(Path(bench["outputs"]["results"]).read_text())
        m = results["machine"]
        lines += [f"Measured in one run on {m['cpu']} ({m['cpu_count']} CPUs, {m['device']}, JAX {m['jax']}): "
                  f"{results['test_subjects']} test subjects, MC-dropout samples {results['mc_samples']}, "
                  f"{results['settings']['iterations']} interleaved calls per model and batch size.", ""]
    else:
        lines += ["Not benchmarked (`enable_benchmarking` off): sizes and speeds not measured; MAE is each run's "
                  "test-split figure.", ""]
    lines += table_markdown(rows) + [""]
    s = result["summary"]
    if s["target"]["met"] is not None:
        verdict = "met" if s["target"]["met"] else "not met"
        lines += [f"Final model: {s['speedup']:.2f}x the baseline's throughput, test MAE {s['mae_change']:+.2%} "
                  f"(target: >= {s['target']['throughput_x']:g}x at <= {s['target']['mae_tolerance']:.0%} "
                  f"relative MAE: {verdict}).", ""]
    lines += ["## Stages", "", "| stage | seconds | what it chose or wrote |", "|---|---|---|"]
    for name, record in stages.items():
        lines.append(f"| {name} | {record['seconds']:.0f} | {_what(record['outputs'])} |")
    lines += ["", f"Total: {s['total_seconds']:.0f} s.", ""]
    if pngs:
        lines += ["## Charts", ""] + [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    return "\n".join(lines)


def _what(outputs: dict[str, Any]) -> str:
    if "chosen" in outputs:
        return (f"trial {outputs['chosen']['trial']} of {outputs['trials']}: "
                + ", ".join(f"{k}={v}" for k, v in outputs["chosen"]["config"].items()))
    if "served" in outputs:
        return f"served: {outputs['served']}"
    if "repository" in outputs:
        return f"{outputs['repository']} ({outputs['options']['backend']}/{outputs['options']['precision_mode']})"
    if "exports" in outputs:
        return ", ".join(Path(e["path"]).name for e in outputs["exports"])
    if "max_psi" in outputs:
        return f"alert rules, drift report (max PSI {outputs['max_psi']:.3f})"
    return str(outputs.get("run", outputs.get("data", "")))


def write_report(out: str | Path) -> dict[str, Any]:
    """Render the report from the stage files in `out`; returns what `report.json` holds."""
    out = Path(out)
    rows = table_rows(out)
    result: dict[str, Any] = {"table": rows}
    result["summary"] = summary(out, rows)
    pngs = charts(out, rows)
    result["charts"] = [str(p) for p in pngs]
    result["report"] = str(out / "report.md")
    write_text_atomic(out / "report.md", markdown(out, rows, result, pngs))
    write_json_atomic(out / "report.json", result)
    return result
