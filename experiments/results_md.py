"""Render experiments/RESULTS.md from experiments/results/*.json: every results file, the
command that writes it, and its figures as tables.

    python experiments/results_md.py            # writes experiments/RESULTS.md
    python experiments/results_md.py --check    # exit 1 when RESULTS.md is not current

The page is generated, never edited: a figure in it is the file's own number, next to the
command that reproduces it (`COMMANDS`; tests/test_results_md.py fails on a results file
without one, and on a RESULTS.md that differs from what this script renders). The analysis
of the figures is docs/measurements.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
PAGE = ROOT / "experiments" / "RESULTS.md"

# results file -> the command that writes it (runs/main/... : the standard run of the default
# cohort and its compressed runs, as docs/measurements.md describes; runs/base: a base-tier run)
BASE = "--run runs/base --data runs/cohort.parquet"
MAIN = "--run runs/main/fp32 --data runs/main/cohort.parquet"
DISTILLED = "--only 'student, no distillation;student, soft targets'"
COMMANDS: dict[str, str] = {
    "ab_sequential.json": "python experiments/ab_sequential.py",
    "ablate_regularization.json": f"python experiments/ablate_regularization.py {BASE}",
    "ablate_regularization_seed1.json": f"python experiments/ablate_regularization.py {BASE} --seed 1 "
                                        "--only adversarial,modality_dropout "
                                        "--out experiments/results/ablate_regularization_seed1.json",
    "ablate_regularization_seed2.json": f"python experiments/ablate_regularization.py {BASE} --seed 2 "
                                        "--only adversarial,modality_dropout "
                                        "--out experiments/results/ablate_regularization_seed2.json",
    "bench_compression.json": f"python experiments/bench_compression.py {MAIN} "
                              "--epochs 3 --qat-epochs 2 --reps 15",
    "bench_data_scale.json": "python experiments/bench_data_scale.py --retrain",
    "bench_distillation.json": f"python experiments/bench_distillation.py {BASE} --epochs 10",
    "bench_distillation_seed1.json": f"python experiments/bench_distillation.py {BASE} --epochs 10 --seed 1 "
                                     f"{DISTILLED} "
                                     "--out experiments/results/bench_distillation_seed1.json",
    "bench_distillation_seed2.json": f"python experiments/bench_distillation.py {BASE} --epochs 10 --seed 2 "
                                     f"{DISTILLED} "
                                     "--out experiments/results/bench_distillation_seed2.json",
    "bench_evaluate.json": "python experiments/bench_evaluate.py",
    "bench_fast_training.json": "python experiments/bench_fast_training.py --baseline-commit 2547f94^ --again",
    "bench_host_memory.json": "python experiments/bench_host_memory.py",
    "bench_inference.json": "python experiments/bench_inference.py",
    "bench_search.json": "python experiments/bench_search.py",
    "bench_serving.json": "HAMNET_PERF_ANALYZER=PATH python experiments/bench_serving.py "
                          "--mlserver .mlserver/bin/mlserver",
    "bench_small_data.json": "python experiments/bench_small_data.py",
    "bench_soak.json": "python experiments/bench_soak.py --run runs/soak/std",
    "bench_soak_repeat.json": ("python experiments/bench_soak.py --run runs/soak/std "
                               "--out experiments/results/bench_soak_repeat.json"),
    "bench_soak_run3.json": ("python experiments/bench_soak.py --run runs/soak/std "
                             "--out experiments/results/bench_soak_run3.json"),
    "interactions_bayes_bound.json": "python experiments/interactions_bayes_bound.py",
    "interactions_residuals.json": "python experiments/interactions_residuals.py",
    "bench_onnx_sessions.json": "python experiments/bench_onnx_sessions.py --run runs/soak/std",
    "bench_large_requests.json": "python -m experiments.bench_large_requests --run runs/soak/std",
    "bench_storage.json": "python experiments/bench_storage.py",
    "bench_train.json": "python experiments/bench_train.py",
    "bench_train_malloc_huge-pages.json": "python experiments/bench_train.py --tiers standard --only fp32 --steps 10 "
                                          "--reps 7 --malloc huge-pages "
                                          "--out experiments/results/bench_train_malloc_huge-pages.json",
    "bench_train_malloc_tcmalloc.json": "python experiments/bench_train.py --tiers standard --only fp32 --steps 10 "
                                        "--reps 7 --malloc tcmalloc "
                                        "--out experiments/results/bench_train_malloc_tcmalloc.json",
    "bench_train_runs_huge-pages.json": "python experiments/bench_train_runs.py --runs 3 --reps 7 --malloc huge-pages",
    "bench_train_packing.json": "python experiments/bench_train.py --only \"fp32, every visit slot (no packing)\" "
                                "\"fp32, multi-threaded Eigen\" \"fp32, jax.random.bits dropout masks\" "
                                "\"fp32, dropout divides by a constant\" \"fp32, weight gradients as JAX transposes "
                                "them\" \"fp32, Flax bernoulli dropout masks\" \"fp32, rbg dropout keys\" "
                                "\"fp32, unsafe_rbg dropout keys\" --tiers standard --reps 15 "
                                "--out experiments/results/bench_train_packing.json",
    "bench_uncertainty.json": "HAMNET_PERF_ANALYZER=PATH python experiments/bench_uncertainty.py",
    "bench_wide_start.json": "python experiments/bench_wide_start.py",
    "gpu_check.json": "python experiments/gpu_check.py --run runs/main/fp32 --student runs/main/student-0.25",
    "main_results.json": "python experiments/main_results.py",
    "mean_protection_frailty.json": "python experiments/bench_mean_protection.py --generator frailty",
    "bench_model_quality.json": "python experiments/bench_model_quality.py --variants "
                                "default,previous_defaults,weight_average && python experiments/bench_model_quality.py "
                                "--worlds interactions --tables '' --variants piecewise_linear && python "
                                "experiments/bench_model_quality.py --tables '' "
                                "--variants piecewise_linear+weight_average",
    "pipeline_quick.json": "python experiments/pipeline_quick.py",
    "profile_train_step.json": "python experiments/profile_train_step.py",
    "pruning_sweep.json": f"python experiments/sweep_pruning.py {BASE} --epochs 2",
}
# figures -> the command that draws them
FIGURES: dict[str, str] = {
    "bench_data_scale.png": COMMANDS["bench_data_scale.json"],
    "bench_search_nas_convergence.png": COMMANDS["bench_search.json"],
    "bench_search_nas_pareto_front.png": COMMANDS["bench_search.json"],
    "pruning_sweep.png": COMMANDS["pruning_sweep.json"],
}
MAX_COLUMNS = 9
MAX_ROWS = 40


def number(value: Any) -> str:
    """A figure as the page shows it: 4 significant digits, integers whole."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "–"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def table(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Markdown table of named rows: the scalar fields the rows share, first ones first."""
    columns: list[str] = []
    for _, row in rows:
        columns += [k for k, v in row.items() if scalar(v) and k not in columns]
    columns = columns[:MAX_COLUMNS]
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in rows[:MAX_ROWS]:
        lines.append(f"| {number(name)} | " + " | ".join(number(row.get(c)) for c in columns) + " |")
    if len(rows) > MAX_ROWS:
        lines.append(f"\n({len(rows) - MAX_ROWS} more rows in the file)")
    return lines


def named_rows(value: Any) -> list[tuple[str, dict[str, Any]]] | None:
    """A list of records or a mapping of name -> record as (name, record), else None."""
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        key = next((k for k in ("name", "model", "technique", "path", "concurrency") if k in value[0]), None)
        return [(str(r.get(key, i)) if key else str(i), r) for i, r in enumerate(value)]
    if isinstance(value, dict) and value and all(isinstance(r, dict) for r in value.values()):
        if sum(scalar(v) for r in value.values() for v in r.values()):
            return [(str(k), r) for k, r in value.items()]
    return None


def render_value(key: str, value: Any, depth: int) -> list[str]:
    rows = named_rows(value)
    if rows is not None:
        return [f"\n{'#' * depth} `{key}`\n", *table(rows)]
    if isinstance(value, dict):
        out = [f"\n{'#' * depth} `{key}`\n"]
        scalars = {k: v for k, v in value.items() if scalar(v)}
        out += [f"- `{k}`: {number(v)}" for k, v in scalars.items()]
        for k, v in value.items():
            if not scalar(v) and depth < 5:
                out += render_value(f"{key}.{k}", v, depth + 1)
        return out
    return []


def render_file(name: str, data: Any) -> list[str]:
    out = [f"\n## {name}\n", f"Written by `{COMMANDS[name]}`.\n"]
    if not isinstance(data, dict):
        return out + ["(not an object)"]
    scalars = {k: v for k, v in data.items() if scalar(v) and k != "stdout"}
    out += [f"- `{k}`: {number(v)}" for k, v in scalars.items()]
    for key, value in data.items():
        if not scalar(value):
            out += render_value(key, value, 3)
    return out


def render() -> str:
    files = sorted(RESULTS.glob("*.json"))
    figures = sorted(RESULTS.glob("*.png"))
    missing = [f.name for f in files if f.name not in COMMANDS] + [f.name for f in figures if f.name not in FIGURES]
    if missing:
        raise SystemExit(f"results files without a command in experiments/results_md.py COMMANDS / FIGURES: {missing}")
    lines = ["# Results", "",
             "Generated by `python experiments/results_md.py` from `experiments/results/*.json`; do not edit.",
             "Each section is one results file and the command that writes it. The analysis of these",
             "figures, and the machine they were measured on, is in [docs/measurements.md](../docs/measurements.md).",
             "", "| file | command |", "|---|---|"]
    lines += [f"| [{f.name}](#{f.stem.lower().replace('.', '')}json) | `{COMMANDS[f.name]}` |"
              for f in files]
    for f in files:
        lines += render_file(f.name, json.loads(f.read_text()))
    lines += ["", "## Figures", ""]
    for f in figures:
        lines += [f"`{f.name}`, drawn by `{FIGURES[f.name]}`:", "", f"![{f.stem}](results/{f.name})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when experiments/RESULTS.md is not current")
    args = ap.parse_args()
    text = render()
    if args.check:
        current = PAGE.exists() and PAGE.read_text() == text
        print("experiments/RESULTS.md is current" if current else
              "experiments/RESULTS.md is stale: run python experiments/results_md.py")
        return 0 if current else 1
    PAGE.write_text(text)
    print(f"wrote {PAGE.relative_to(ROOT)} ({len(text):,} characters, {len(list(RESULTS.glob('*.json')))} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
