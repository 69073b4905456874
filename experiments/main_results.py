"""The README's main results, in one resumable script: the default synthetic cohort, the
standard tier trained in fp32 (then evaluated beside the baselines, exported to ONNX with
its parity measured, and quantized to dynamic int8 with its weight file measured), in
bf16, and with visit bucketing.

    python experiments/main_results.py [--subjects 6000] [--work runs/main] \
        [--out experiments/results/main_results.json]

Each finished row is stored in the JSON at once (atomically); a rerun skips finished rows
and resumes an interrupted training from its checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import yaml  # noqa: E402

from hamnet_jax.runs.compress import compress_run  # noqa: E402
from hamnet_jax.config import QuantizationConfig, load_config  # noqa: E402
from hamnet_jax.cohort.default import generate_cohort  # noqa: E402
from hamnet_jax.data.schema import Schema  # noqa: E402
from hamnet_jax.data.tables import write_table  # noqa: E402
from hamnet_jax.runs.evaluate import evaluate_run  # noqa: E402
from hamnet_jax.export.onnx_export import export_run_onnx  # noqa: E402
from hamnet_jax.inference.raw_model import RawModel  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.runs.run_dir import load_run  # noqa: E402
from hamnet_jax.runs.train import train_run  # noqa: E402

VARIANTS = {  # training keys on top of the defaults (standard tier)
    "fp32": {},
    "bf16": {"precision_mode": "bf16"},
    "fp32, bucket_by_visits": {"bucket_by_visits": True},
}


def cohort(work: Path, subjects: int) -> tuple[Path, Schema]:
    data = work / "cohort.parquet"
    if not data.exists():
        frame, schema = generate_cohort(subjects, seed=0)
        write_table(frame, data)
        (work / "cohort.schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    return data, Schema.load(work / "cohort.schema.yaml")


def train_variant(name: str, keys: dict, data: Path, schema: Schema, work: Path) -> dict:
    config = load_config(None, environ={})
    config = dataclasses.replace(config, training=dataclasses.replace(config.training, **keys))
    out = work / name.replace(", ", "-")
    resume = any((out / "checkpoints").glob("**/_CHECKPOINT_METADATA"))
    start = time.perf_counter()
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else \
        train_run(data, schema, config, out, resume=resume, progress=False)
    return {"run": str(out), "train_seconds": time.perf_counter() - start, "test": summary["test"],
            "best_epoch": summary["best_epoch"], "epochs_run": summary["epochs_run"],
            "padding_fraction": summary["padding_fraction"]}


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def quantized_row(run_dir: str, data: Path, work: Path) -> dict:
    """`hamnet quantize --mode dynamic` of the fp32 run: the weight file's size against the
    fp32 weights (dense float32 in the same container, and the orbax params folder), and
    `evaluate`'s MAE on the written int8 run against the summary's."""
    out = work / "int8-dynamic"
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else \
        compress_run(run_dir, data, out, quantization=QuantizationConfig(mode="dynamic"))
    evaluated = evaluate_run(load_run(out), data, baselines=False)["rows"]["HAMNet"]
    weights = summary["weights_file_bytes"]
    return {"run": str(out), "weights_file_bytes": weights, "fp32_same_container_bytes": summary["baseline_bytes"],
            "fp32_orbax_params_bytes": directory_bytes(Path(run_dir) / "params"),
            "ratio_vs_fp32_same_container": summary["baseline_bytes"] / weights,
            "ratio_vs_fp32_orbax_params": directory_bytes(Path(run_dir) / "params") / weights,
            "summary_test_mae": summary["test"]["mae"], "evaluate_mae": evaluated["mae"],
            "fp32_deterministic_mae": summary["baseline_metrics"]["mae"],
            "int8_deterministic_mae": summary["optimized_metrics"]["mae"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=6000)
    ap.add_argument("--work", default="runs/main")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "main_results.json"))
    args = ap.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    store = json.loads(out.read_text()) if out.exists() else {}
    if store.get("subjects") != args.subjects:
        store = {"subjects": args.subjects, "jax": jax.__version__, "device": jax.devices()[0].device_kind,
                 "training": {}}
    data, schema = cohort(work, args.subjects)
    for name, keys in VARIANTS.items():
        if name not in store["training"]:
            store["training"][name] = train_variant(name, keys, data, schema, work)
            write_json_atomic(out, store)
        print(f"{name}: test {store['training'][name]['test']}", flush=True)
    run_dir = store["training"]["fp32"]["run"]
    if "evaluation" not in store:
        start = time.perf_counter()
        store["evaluation"] = {**evaluate_run(load_run(run_dir), data), "seconds": time.perf_counter() - start}
        write_json_atomic(out, store)
    if "onnx_parity" not in store:
        # the raw-input graph with the run's MC-dropout masks: what `hamnet export --raw-inputs` writes
        export = export_run_onnx(RawModel.from_run(load_run(run_dir)), work / "model.onnx", "fp32", True)
        store["onnx_parity"] = {k: v for k, v in export.parity.items() if k.startswith("batch_")}
        write_json_atomic(out, store)
    if "int8_dynamic" not in store:
        store["int8_dynamic"] = quantized_row(run_dir, data, work)
        write_json_atomic(out, store)
    for row, metrics in store["evaluation"]["rows"].items():
        print(f"{row:<55} MAE {metrics['mae']:.3f}  RMSE {metrics['rmse']:.3f}  R2 {metrics['r2']:.3f}")
    print("ONNX parity:", store["onnx_parity"])
    print("int8 dynamic:", store["int8_dynamic"])


if __name__ == "__main__":
    main()
