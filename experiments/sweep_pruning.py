"""Sparsity sweep (0-95%) of magnitude, movement and structured pruning on a trained run.

Every point prunes the run's model to the sparsity, fine-tunes it for the same number of
epochs, and records test MAE (years), R^2, nonzero and total parameters, the compressed
checkpoint size and, for structured pruning, the compacted model's latency at batch 256
beside the dense model's (measured in the same call). Results are appended to the JSON
after every point (atomically), so an interrupted sweep resumes where it stopped.

    hamnet cohort --out cohort.parquet
    hamnet train --data cohort.parquet --tier standard --out runs/standard
    python experiments/sweep_pruning.py --run runs/standard --data cohort.parquet

Writes experiments/results/pruning_sweep.json and experiments/results/pruning_sweep.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hamnet_jax.config import PruningConfig  # noqa: E402
from hamnet_jax.runs.compress import load_run_splits  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.optimization.pruning_quantization import HAMNetOptimizer  # noqa: E402

METHODS = ("magnitude", "movement", "structured")
SPARSITIES = (0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95)


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method in METHODS:
        rows = sorted((p for p in points if p["method"] == method), key=lambda p: p["sparsity"])
        if not rows:
            continue
        axes[0].plot([p["sparsity"] for p in rows], [p["mae"] for p in rows], "o-", label=method)
        axes[1].plot([p["optimized_params"] - p.get("zeros", 0) for p in rows], [p["mae"] for p in rows], "o-",
                     label=method)
    if points:
        axes[0].axhline(points[0]["baseline_mae"] * 1.02, color="k", ls=":", lw=1, label="dense MAE + 2%")
    axes[0].set_xlabel("target sparsity")
    axes[1].set_xlabel("nonzero parameters")
    for ax in axes:
        ax.set_ylabel("test MAE (years)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs per point")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--sparsities", default=",".join(str(s) for s in SPARSITIES))
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "pruning_sweep.json"))
    ap.add_argument("--plot", default=str(ROOT / "experiments" / "results" / "pruning_sweep.png"))
    args = ap.parse_args()
    out = Path(args.out)
    points: list[dict] = json.loads(out.read_text())["points"] if out.exists() else []
    done = {(p["method"], p["sparsity"]) for p in points}
    run, _, batches = load_run_splits(args.run, args.data)
    for method in args.methods.split(","):
        for sparsity in (float(s) for s in args.sparsities.split(",")):
            if (method, sparsity) in done:
                continue
            cfg = PruningConfig(method=method, target_sparsity=sparsity, finetune_epochs=args.epochs,
                                pruning_schedule="polynomial", end_epoch=max(args.epochs // 2, 1))
            opt = HAMNetOptimizer(cfg, None, target_std=run.preprocessor.target_std,
                                  latency_reps=10 if method == "structured" else 1)
            _, r = opt.optimize_model(run.model_config, run.params, batches["train"], batches["val"],
                                      batches["test"])
            sparsity_report = r.pruning["sparsity"]
            point = {"method": method, "sparsity": sparsity, "mae": r.optimized_metrics["mae"],
                     "r2": r.optimized_metrics["r2"], "baseline_mae": r.baseline_metrics["mae"],
                     "relative_mae_change": r.accuracy_drop, "prunable_sparsity": sparsity_report["prunable_sparsity"],
                     "zeros": sparsity_report["total_params"] - sparsity_report["nonzero_params"],
                     "baseline_params": r.baseline_params, "optimized_params": r.optimized_params,
                     "checkpoint_bytes": r.optimized_bytes, "baseline_bytes": r.baseline_bytes,
                     "compression_ratio": r.compression_ratio}
            if method == "structured":
                c = r.model.config
                point.update(latency_ms_batch256=r.optimized_latency_ms, speedup=r.speedup_factor,
                             dense_latency_ms_batch256=r.baseline_latency_ms,
                             config={"num_heads": c.num_heads, "head_dim": c.head_dim, "mlp_dim": c.mlp_dim,
                                     "imaging_kept": len(c.imaging_kept_features),
                                     "genetic_kept": len(c.genetic_kept_features)})
            points.append(point)
            write_json_atomic(out, {"run": str(args.run), "epochs": args.epochs, "points": points})
            print(f"{method:>10} {sparsity:5.2f}  MAE {point['mae']:.3f} ({point['relative_mae_change']:+.2%})  "
                  f"params {point['optimized_params']:,} (zeros {point['zeros']:,})  "
                  f"ckpt {point['compression_ratio']:.2f}x"
                  + (f"  speed-up {point['speedup']:.2f}x" if method == "structured" else ""), flush=True)
    plot(points, Path(args.plot))
    print(f"wrote {out} and {args.plot}")


if __name__ == "__main__":
    main()
