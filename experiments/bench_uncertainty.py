"""Uncertainty at serving speed: the distilled MC spread against MC dropout, in quality and
in `hamnet serve --run RUN` throughput under Triton's perf_analyzer.

    python experiments/bench_uncertainty.py [--work runs/uncertainty] [--rounds 3]
                                            [--out experiments/results/bench_uncertainty.json]

A standard-tier run on the default cohort (6,000 subjects, seed 0) is trained as a user
trains it (`hamnet cohort`, `hamnet train --tier standard`) unless `<work>/run` exists.

Quality, on the test split: each estimate's test MAE and 90% coverage (every MC variant's
interval scale refitted on the validation split as training fits it; the distilled one
its own, from training), its mean epistemic std, and the Spearman correlation of its
epistemic std with (a) the run's own 20-sample MC estimate (what `hamnet predict
--uncertainty mc` and the service gave before) and (b) a 200-sample MC estimate from
independent masks (closer to the model's true MC spread). Two further independent
20-sample draws show how much of (a) any estimator can reach: the 20-sample estimate's
own noise.

Serving: `hamnet serve --run RUN` as a user starts it (its default: the distilled spread,
JAX backend) and the same with `inference.uncertainty: mc` (20 MC samples), both up at
once, measured in alternating rounds by perf_analyzer (`HAMNET_PERF_ANALYZER`;
hamnet_jax/bench/perf_analyzer.py) at 1 and 32 concurrent clients, one subject per
request, 16 distinct raw requests with 20% of the values missing; the median round and
the range. Without perf_analyzer the serving half is skipped, saying so.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from hamnet_jax.bench.perf_analyzer import perf_analyzer_binary, run_perf_analyzer, write_input_data  # noqa: E402
from hamnet_jax.cli import main as hamnet  # noqa: E402
from hamnet_jax.client.service_process import serve_process, stop_process  # noqa: E402
from hamnet_jax.data.cohort_batches import model_input  # noqa: E402
from hamnet_jax.data.dataset import open_cohort, split_cohort  # noqa: E402
from hamnet_jax.inference.calibration import UNCALIBRATED, fit_calibration  # noqa: E402
from hamnet_jax.inference.distilled_uncertainty import distilled_predict  # noqa: E402
from hamnet_jax.inference.predictor import predict_batch  # noqa: E402
from hamnet_jax.inference.raw_inputs import random_raw  # noqa: E402
from hamnet_jax.inference.raw_model import RawModel  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.runs.evaluate import prediction_metrics  # noqa: E402
from hamnet_jax.runs.run_dir import load_run  # noqa: E402

# estimate -> (MC samples, mask seed offset from the run's; None: the distilled spread)
ESTIMATES = {"mc20_run_masks": (20, 0), "mc20_draw_b": (20, 101), "mc20_draw_c": (20, 102),
             "mc10_run_seed": (10, 0), "mc5_run_seed": (5, 0), "mc200": (200, 7), "distilled": None}
REFERENCE, DENSE = "mc20_run_masks", "mc200"
LEVELS = (1, 32)
TARGETS = {"throughput_32": 650.0, "p95_ms_32": 60.0, "p50_ms_1": 2.5, "coverage": (0.87, 0.93),
           "spearman_vs_mc20": 0.9}


def trained_run(work: Path) -> Path:
    run = work / "run"
    if not (run / "summary.json").exists():
        work.mkdir(parents=True, exist_ok=True)
        assert hamnet(["cohort", "--seed", "0", "--out", str(work / "cohort.parquet")]) == 0
        assert hamnet(["train", "--data", str(work / "cohort.parquet"), "--tier", "standard", "--out", str(run),
                       "--quiet"]) == 0
    return run


def quality(run_dir: Path, data: Path) -> tuple[list[dict], int]:
    run = load_run(run_dir)
    parts = split_cohort(open_cohort(data, run.schema, run.config.data), run.config.data)
    pre, slots, seed = run.preprocessor, run.config.data.max_visits, run.config.training.seed
    batches = {k: model_input(pre, parts[k]).pad_visits(slots) for k in ("val", "test")}
    estimates = {}
    for name, spec in ESTIMATES.items():
        if spec is None:
            estimates[name] = distilled_predict(run.distilled, run.model.apply_fn(), run.params, batches["test"],
                                                pre.target_mean, pre.target_std)
            continue
        k, offset = spec

        def mc(split: str, calibration=UNCALIBRATED, k=k, offset=offset) -> dict:
            return predict_batch(run.model_config, run.params, batches[split], pre.target_mean, pre.target_std,
                                 calibration, k, seed + offset, visit_slots=slots)

        calibration = fit_calibration(parts["val"].targets, parts["val"].labels, mc("val"))
        estimates[name] = mc("test", calibration)
        print(f"  {name}: done", flush=True)
    rows = []
    for name, pred in estimates.items():
        metrics = prediction_metrics(parts["test"], pred)
        rows.append({"estimate": name, "mae": metrics["mae"], "coverage_90": metrics["coverage_90"],
                     "mean_epistemic_std": float(np.mean(pred["epistemic_std"])),
                     "spearman_vs_mc20_run_masks": float(spearmanr(pred["epistemic_std"],
                                                                   estimates[REFERENCE]["epistemic_std"]).statistic),
                     "spearman_vs_mc200": float(spearmanr(pred["epistemic_std"],
                                                          estimates[DENSE]["epistemic_std"]).statistic)})
    return rows, int(parts["test"].num_subjects)


def serving(run_dir: Path, binary: str, rounds: int, measurement_ms: int, tmp: Path) -> list[dict]:
    raw = RawModel.from_run(load_run(run_dir), uncertainty="mc")
    requests = [random_raw(raw.spec, raw.preprocessor, 1, seed=i, missing=0.2) for i in range(16)]
    data = write_input_data(requests, tmp / "requests.json")
    mc_config = tmp / "mc.yaml"
    mc_config.write_text(yaml.safe_dump({"inference": {"uncertainty": "mc"}}))
    servers = {"distilled (default)": [], "mc20": ["--config", str(mc_config)]}
    started = {name: serve_process(None, tmp / f"{i}.log", extra=["--run", str(run_dir), "--no-access-log", *extra])
               for i, (name, extra) in enumerate(servers.items())}
    samples: dict[tuple[str, int], list[dict]] = {}
    try:
        for r in range(rounds):
            for level in LEVELS:
                for name, (_, url) in started.items():
                    report = tmp / f"round{r}-{level}-{len(samples)}.csv"
                    row = run_perf_analyzer(binary, url, "hamnet", level, data, report, measurement_ms)
                    samples.setdefault((name, level), []).append(row)
                    print(f"  round {r + 1} {name} c={level}: {row['throughput']:,.0f}/s p50 {row['p50_ms']:.2f} ms "
                          f"p95 {row['p95_ms']:.2f} ms", flush=True)
    finally:
        for process, _ in started.values():
            stop_process(process)
    out = []
    for (name, _), rows in samples.items():
        median = sorted(rows, key=lambda row: row["throughput"])[len(rows) // 2]
        out.append({**median, "served": name, "rounds": len(rows),
                    "throughputs": [row["throughput"] for row in rows], "p95s_ms": [row["p95_ms"] for row in rows],
                    "p50s_ms": [row["p50_ms"] for row in rows]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="runs/uncertainty")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measurement-ms", type=int, default=4000)
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bench_uncertainty.json"))
    args = parser.parse_args()
    work = Path(args.work)
    run_dir = trained_run(work)
    rows, test_subjects = quality(run_dir, work / "cohort.parquet")
    print("| estimate | test MAE | 90% coverage | mean epistemic std | Spearman vs run's MC-20 | vs MC-200 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['estimate']} | {r['mae']:.3f} | {r['coverage_90']:.3f} | {r['mean_epistemic_std']:.3f} | "
              f"{r['spearman_vs_mc20_run_masks']:.3f} | {r['spearman_vs_mc200']:.3f} |")
    binary = perf_analyzer_binary()
    served, skipped = [], None
    if binary is None:
        skipped = "perf_analyzer not found (HAMNET_PERF_ANALYZER or PATH): serving not measured"
        print(skipped)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            served = serving(run_dir, binary, args.rounds, args.measurement_ms, Path(tmp))
        print("| served | clients | infer/s (median [range]) | p50 ms | p95 ms |")
        print("|---|---|---|---|---|")
        for s in served:
            print(f"| {s['served']} | {s['concurrency']} | {s['throughput']:,.0f} [{min(s['throughputs']):,.0f}–"
                  f"{max(s['throughputs']):,.0f}] | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} |")
    distilled = next(r for r in rows if r["estimate"] == "distilled")
    checks = {"coverage": distilled["coverage_90"], "spearman_vs_mc20": distilled["spearman_vs_mc20_run_masks"]}
    for s in served:
        if s["served"].startswith("distilled"):
            if s["concurrency"] == 32:
                checks.update(throughput_32=s["throughput"], p95_ms_32=s["p95_ms"])
            else:
                checks["p50_ms_1"] = s["p50_ms"]
    write_json_atomic(Path(args.out), {
        "run": str(run_dir), "test_subjects": test_subjects, "quality": rows, "serving": served,
        "serving_skipped": skipped, "checks": checks, "targets": TARGETS,
        "noise_floor_spearman_mc20_vs_mc20": statistics.median(
            r["spearman_vs_mc20_run_masks"] for r in rows if r["estimate"] in ("mc20_draw_b", "mc20_draw_c"))})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
