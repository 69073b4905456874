"""Inference benchmark: every CPU backend x precision x tier in one run on this machine.

    python experiments/bench_inference.py [--work runs/main] [--out experiments/results/bench_inference.json]

Needs the standard-tier run `<work>/fp32` (experiments/main_results.py trains it) and its
0.25x distilled student `<work>/student-0.25` (`hamnet distill --run <work>/fp32 --data
<work>/cohort.parquet --out <work>/student-0.25`); the base tier is timed with freshly
initialized weights (latency does not depend on the values; it has no MAE row).

For each model: the JAX predictor (fp32) and ONNX Runtime graphs at fp32, fp16, static
int8 (calibrated on the training split) and dynamic int8, all taking raw inputs and run
deterministically (`mc_samples=0`). Latency p50 / p99 at batch 1, 8, 32 and 256 on
random raw requests, throughput at 256, file size, and test-split MAE of the trained
models. The chain check (distilled student + int8 vs the fp32 JAX standard tier at batch
256) is measured as the median of interleaved repetitions of both sides.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from hamnet_jax.bench.models import param_count  # noqa: E402
from hamnet_jax.data.batch import random_batch  # noqa: E402
from hamnet_jax.data.dataset import load_cohort, split_cohort  # noqa: E402
from hamnet_jax.export.onnx_export import export_run_onnx  # noqa: E402
from hamnet_jax.inference.compressed import CompressedModel  # noqa: E402
from hamnet_jax.inference.predictors import JaxPredictor, OnnxPredictor, Predictor  # noqa: E402
from hamnet_jax.inference.raw_inputs import cohort_to_raw, random_raw  # noqa: E402
from hamnet_jax.inference.raw_model import RawModel  # noqa: E402
from hamnet_jax.evaluation.timing import request_latency  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.models.config import TIERS, HAMNetConfig  # noqa: E402
from hamnet_jax.models.hamnet import HAMNet, init_params  # noqa: E402
from hamnet_jax.runs.run_dir import load_run  # noqa: E402

BATCHES = (1, 8, 32, 256)
REPS = {1: 200, 8: 100, 32: 40, 256: 12}
PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic")
CHAIN_REPEATS = 3


def base_tier(like: RawModel) -> RawModel:
    """The base tier on the same data (widths, categories, preprocessing), initialized."""
    c = like.model.config
    config = HAMNetConfig.from_tier("base", **{f: getattr(c, f) for f in (
        "clinical_dim", "imaging_dim", "genetic_dim", "lifestyle_dim", "lifestyle_cardinalities",
        "imaging_group_size", "genetic_group_size", "classification")})
    params = init_params(HAMNet(config), random_batch(config, 2, like.spec.max_visits), jax.random.key(0))
    return RawModel(CompressedModel(config, params), like.preprocessor, like.calibration, like.spec)


def predictors(raw: RawModel, name: str, work: Path, train, test) -> dict[str, tuple[Predictor, int]]:
    """backend/precision -> (predictor, model bytes)."""
    out: dict[str, tuple[Predictor, int]] = {"jax/fp32": (JaxPredictor(raw, BATCHES), param_count(raw) * 4)}
    for precision in PRECISIONS:
        path = work / "bench_inference" / f"{name}-{precision}.onnx"
        export = export_run_onnx(raw, path, precision, True, train, test)
        out[f"onnxruntime/{precision}"] = (OnnxPredictor(path, raw.spec), export.bytes)
    return out


def test_mae(predictor: Predictor, test_request: dict, targets: np.ndarray) -> float:
    return float(np.abs(predictor.predict(test_request)["prediction"] - targets).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="runs/main")
    parser.add_argument("--out", default="experiments/results/bench_inference.json")
    args = parser.parse_args()
    work = Path(args.work)
    teacher_run = load_run(work / "fp32")
    data = load_cohort(work / "cohort.parquet", teacher_run.schema, teacher_run.config.data)
    parts = split_cohort(data, teacher_run.config.data)
    standard = RawModel.from_run(teacher_run, 0)
    models = {"base (untrained)": base_tier(standard), "standard": standard,
              "student 0.25x (distilled)": RawModel.from_run(load_run(work / "student-0.25"), 0)}
    request = random_raw(standard.spec, standard.preprocessor, 256, seed=0)
    test_request = cohort_to_raw(parts["test"], standard.spec)
    rows, chain_sides = [], {}
    for name, raw in models.items():
        trained = not name.startswith("base")
        for backend, (predictor, size) in predictors(raw, name.split()[0], work, parts["train"], parts["test"]).items():
            row = {"model": name, "tier": raw.model.config.tier, "params": param_count(raw), "backend": backend,
                   "bytes": size, "mae": test_mae(predictor, test_request, parts["test"].targets) if trained else None}
            for b in BATCHES:
                stats = request_latency(predictor, request, b, REPS[b])
                row[f"p50_ms_b{b}"], row[f"p99_ms_b{b}"] = stats.p50, stats.p99
            row["samples_per_s_b256"] = 256 / row["p50_ms_b256"] * 1e3
            rows.append(row)
            print(f"{name:26s} {backend:24s} " + " ".join(f"b{b} {row[f'p50_ms_b{b}']:7.2f}" for b in BATCHES)
                  + f"  {row['samples_per_s_b256']:8.0f}/s  {size / 1e6:6.2f} MB"
                  + (f"  MAE {row['mae']:.4f}" if trained else ""), flush=True)
            if (name, backend) in (("standard", "jax/fp32"),) or (trained and name != "standard"):
                chain_sides[(name, backend)] = predictor
    base_mae = next(r["mae"] for r in rows if r["model"] == "standard" and r["backend"] == "jax/fp32")
    for r in rows:
        r["mae_vs_standard_fp32_jax"] = None if r["mae"] is None else r["mae"] / base_mae - 1.0

    # the chain: distilled student + int8 against the fp32 JAX standard tier, interleaved
    reference = chain_sides[("standard", "jax/fp32")]
    candidates = {k: p for k, p in chain_sides.items() if k[0] != "standard" and k[1] != "onnxruntime/fp16"}
    times: dict[str, list[float]] = {"standard jax/fp32": []} | {f"{k[0]} {k[1]}": [] for k in candidates}
    for _ in range(CHAIN_REPEATS):
        times["standard jax/fp32"].append(request_latency(reference, request, 256, REPS[256]).p50)
        for k, p in candidates.items():
            times[f"{k[0]} {k[1]}"].append(request_latency(p, request, 256, REPS[256]).p50)
    ref_ms = float(np.median(times["standard jax/fp32"]))
    chain = []
    for key, ms in times.items():
        row = next(r for r in rows if f"{r['model']} {r['backend']}" == key)
        chain.append({"model": key, "p50_ms_b256_runs": ms, "median_ms": float(np.median(ms)),
                      "speedup_vs_standard_fp32_jax": ref_ms / float(np.median(ms)),
                      "mae": row["mae"], "mae_vs_standard_fp32_jax": row["mae_vs_standard_fp32_jax"]})
    print("\nbatch-256 throughput vs the fp32 JAX standard tier (median of "
          f"{CHAIN_REPEATS} interleaved repetitions):")
    for c in chain:
        print(f"  {c['model']:48s} {c['speedup_vs_standard_fp32_jax']:5.2f}x  MAE {c['mae']:.4f} "
              f"({c['mae_vs_standard_fp32_jax']:+.2%})  runs {', '.join(f'{m:.1f}' for m in c['p50_ms_b256_runs'])} ms")
    write_json_atomic(Path(args.out), {
        "device": str(jax.devices()[0]), "jax": jax.__version__, "cpu_count": __import__("os").cpu_count(),
        "mode": "deterministic (mc_samples=0), raw inputs", "tiers": {k: TIERS[k] for k in ("base", "standard")},
        "test_subjects": int(parts["test"].num_subjects), "rows": rows, "chain": chain})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
