"""Model Optimization Results: baseline, +pruning, +INT8 — all measured in one run.

For a trained run, builds every compressed variant, then measures all of them side by
side: checkpoint size on disk, latency at batch 1 and 32 and throughput at batch 256
(median of interleaved calls, jitted, after compilation), test MAE (years) and R^2.

Variants: the dense fp32 baseline; 50% unstructured magnitude pruning (fine-tuned,
stored sparse); 50% structured pruning compacted into a smaller dense model (fine-tuned);
that compacted model with INT8 dynamic quantization; INT8 PTQ of the baseline
(weight-only, dynamic, static with percentile calibration); INT8 QAT; sensitivity-chosen
mixed widths; bf16; and, as a control for QAT's extra epochs, the fp32 model fine-tuned
for the same epochs.

    hamnet cohort --out cohort.parquet
    hamnet train --data cohort.parquet --tier standard --out runs/standard
    python experiments/bench_compression.py --run runs/standard --data cohort.parquet

Writes experiments/results/bench_compression.json.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from hamnet_jax.config import PruningConfig, QuantizationConfig  # noqa: E402
from hamnet_jax.compression.prune import prune_and_finetune  # noqa: E402
from hamnet_jax.compression.quantize import quantize_model  # noqa: E402
from hamnet_jax.runs.compress import load_run_splits  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.evaluation.metrics import point_metrics  # noqa: E402
from hamnet_jax.evaluation.timing import latency_ms  # noqa: E402
from hamnet_jax.export.compressed_checkpoint import compressed_bytes, float_bytes  # noqa: E402
from hamnet_jax.inference.compressed import CompressedModel  # noqa: E402
from hamnet_jax.training.fit_options import FitOptions  # noqa: E402
from hamnet_jax.training.plan import Plan  # noqa: E402
from hamnet_jax.training.state import count_params  # noqa: E402

MB = 1e6


def build_variants(run, batches, epochs: int, qat_epochs: int) -> tuple[dict[str, CompressedModel], dict]:
    cfg, params = run.model_config, run.params
    train, val = batches["train"], batches["val"]
    notes: dict = {}
    models = {"baseline (fp32)": CompressedModel(cfg, params)}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        notes[name] = {"build_seconds": time.perf_counter() - start}
        return out

    magnitude = timed("+pruning 50% magnitude", lambda: prune_and_finetune(
        cfg, params, train, val,
        PruningConfig("magnitude", 0.5, finetune_epochs=epochs, end_epoch=max(epochs // 2, 1))))
    models["+pruning 50% magnitude (sparse ckpt)"] = CompressedModel(magnitude.config, magnitude.params)
    structured = timed("+pruning 50% structured", lambda: prune_and_finetune(
        cfg, params, train, val, PruningConfig("structured", 0.5, finetune_epochs=epochs)))
    notes["+pruning 50% structured"]["config"] = {k: structured.config.to_dict()[k] for k in (
        "num_heads", "head_dim", "mlp_dim", "head_hidden_dim", "clinical_hidden_dim")}
    models["+pruning 50% structured (compacted)"] = CompressedModel(structured.config, structured.params)
    models["+pruning +INT8 dynamic"], _ = quantize_model(structured.config, structured.params, train, val,
                                                          QuantizationConfig("dynamic"))
    for mode, extra in (("weight_only", {}), ("dynamic", {}),
                        ("static", {"calibration_method": "percentile"}), ("qat", {"qat_epochs": qat_epochs}),
                        ("mixed", {})):
        name = f"INT8 {mode}" if mode != "mixed" else "mixed 4/8-bit (sensitivity)"
        models[name], report = timed(name, lambda m=mode, e=extra: quantize_model(
            cfg, params, train, val, QuantizationConfig(m, **e)))
        if mode == "mixed":
            notes[name]["bits_histogram"] = {str(b): list(report["bits"].values()).count(b) for b in (4, 8)}
    models["bf16 weights + compute"], _ = quantize_model(cfg, params, train, val, QuantizationConfig(precision="bf16"))
    options = FitOptions()
    control = timed("fp32 fine-tuned (QAT control)", lambda: options.fit(
        cfg, options.config(qat_epochs, 64, 1e-4, 0), train, val, Plan(init_params=params)))
    models["fp32 fine-tuned (QAT control)"] = CompressedModel(cfg, control.params)
    return models, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs after pruning")
    ap.add_argument("--qat-epochs", type=int, default=3)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bench_compression.json"))
    args = ap.parse_args()
    run, _, batches = load_run_splits(args.run, args.data)
    test, std = batches["test"], run.preprocessor.target_std
    models, notes = build_variants(run, batches, args.epochs, args.qat_epochs)
    predicts = {k: m.predict_fn() for k, m in models.items()}
    latency = {bs: latency_ms(predicts, test.take(np.arange(bs)), args.reps) for bs in (1, 32, 256)}
    base_bytes = float_bytes(run.params)
    rows = []
    for name, m in models.items():
        size = base_bytes if name.startswith("baseline") else compressed_bytes(m.params, m.quant, m.bits)
        metrics = point_metrics(predicts[name], test, std)
        rows.append({"model": name, "size_mb": size / MB, "compression": base_bytes / size,
                     "params": count_params(m.params), "latency_ms_b1": latency[1][name],
                     "latency_ms_b32": latency[32][name], "throughput_b256": 256 / latency[256][name] * 1e3,
                     "speedup_b256": latency[256]["baseline (fp32)"] / latency[256][name],
                     "mae": metrics["mae"], "r2": metrics["r2"], "execution": m.mode or "float",
                     **notes.get(name, {})})
    base_mae = rows[0]["mae"]
    header = (f"{'Model':<38}{'Size MB':>9}{'x':>6}{'Params':>9}{'Lat b1 ms':>10}{'Lat b32 ms':>11}"
              f"{'Thru b256/s':>12}{'Speedup':>8}{'MAE':>7}{'dMAE':>8}{'R2':>7}")
    print(f"Model Optimization Results (JAX {jax.__version__}, {platform.processor() or platform.machine()}, "
          f"{jax.devices()[0].device_kind}, {len(test.targets)} test subjects)")
    print(header)
    for r in rows:
        r["relative_mae_change"] = (r["mae"] - base_mae) / base_mae
        print(f"{r['model']:<38}{r['size_mb']:9.3f}{r['compression']:6.2f}{r['params']:9,}{r['latency_ms_b1']:10.2f}"
              f"{r['latency_ms_b32']:11.2f}{r['throughput_b256']:12.0f}{r['speedup_b256']:8.2f}{r['mae']:7.3f}"
              f"{r['relative_mae_change']:+8.2%}{r['r2']:7.3f}")
    by = {r["model"]: r for r in rows}
    ptq, qat = by["INT8 dynamic"]["mae"], by["INT8 qat"]["mae"]
    recovered = (ptq - qat) / (ptq - base_mae) if ptq > base_mae else None
    print(f"QAT vs dynamic PTQ: PTQ loss {ptq - base_mae:+.4f} years, QAT {qat - base_mae:+.4f}; "
          + (f"recovered {recovered:.0%} of the PTQ loss" if recovered is not None else "PTQ lost nothing to recover"))
    write_json_atomic(Path(args.out), {"rows": rows, "qat_recovered_fraction": recovered,
                                        "jax": jax.__version__, "device": jax.devices()[0].device_kind,
                                        "run": str(args.run), "epochs": args.epochs, "qat_epochs": args.qat_epochs})


if __name__ == "__main__":
    main()
