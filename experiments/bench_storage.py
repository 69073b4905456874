"""What the stores take on disk: the shared cohort cache against the raw float32 size of the
features, and a standard run directory (its checkpoints/ aside), on the default synthetic
cohort at 6,000 and 60,000 subjects.

    python experiments/bench_storage.py [--subjects 6000 60000] [--epochs 2]

Per size, in a temporary directory: `hamnet cohort` writes the cohort (Parquet); `hamnet
train --tier standard --epochs E` trains a run whose cohort cache goes to a fresh
`HAMNET_CACHE_DIR`; `hamnet evaluate --no-baselines` adds what it keeps in the run (its
eval.json and HAMNet's predictions; fitted baselines go to the shared cache, not the run,
and at 60,000 subjects take most of an hour to fit here). The run directory's size does
not depend on the epochs trained beyond one metrics line each, so E is small. Prints a
table; writes experiments/results/bench_storage.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from hamnet_jax.data.schema import Schema, sidecar_path
from hamnet_jax.data.tables import read_columns
from hamnet_jax.io_atomic import write_json_atomic
from hamnet_jax.modalities import MODALITIES

RESULTS = Path(__file__).parent / "results" / "bench_storage.json"


def size(path: Path, skip: tuple[str, ...] = ()) -> int:
    return sum(p.stat().st_size for p in path.rglob("*")
               if p.is_file() and not any(part in skip for part in p.relative_to(path).parts))


def hamnet(*args: str, env: dict[str, str]) -> None:
    quiet = [] if args[0] == "cohort" else ["--quiet"]
    proc = subprocess.run([sys.executable, "-m", "hamnet_jax.cli", *args, *quiet], env=env, capture_output=True,
                          text=True)
    if proc.returncode:
        raise SystemExit(f"hamnet {args[0]} failed:\n{proc.stderr[-3000:]}")


def raw_float32_bytes(data: Path) -> tuple[int, int, int]:
    """(file rows, feature columns, rows x columns x 4): the features as one float32 table."""
    schema = Schema.load(sidecar_path(data))
    columns = {c for m in MODALITIES for c in schema.numeric_columns(m)} | set(schema.categorical_columns)
    rows = len(read_columns(data, [schema.subject_id]))
    return rows, len(columns), rows * len(columns) * 4


def measure(subjects: int, epochs: int, tmp: Path) -> dict:
    env = {**os.environ, "HAMNET_CACHE_DIR": str(tmp / "cache"), "JAX_PLATFORMS": "cpu"}
    data = tmp / f"cohort-{subjects}.parquet"
    hamnet("cohort", "--subjects", str(subjects), "--out", str(data), env=env)
    run = tmp / f"run-{subjects}"
    hamnet("train", "--data", str(data), "--tier", "standard", "--epochs", str(epochs), "--out", str(run), env=env)
    trained = size(run, skip=("checkpoints",))
    hamnet("evaluate", "--run", str(run), "--data", str(data), "--no-baselines", env=env)
    rows, columns, raw = raw_float32_bytes(data)
    caches = [d for d in (tmp / "cache" / "cohorts").iterdir() if not d.name.startswith(".")]
    files = {str(p.relative_to(run)): p.stat().st_size for p in run.rglob("*")
             if p.is_file() and "checkpoints" not in p.relative_to(run).parts}
    return {"subjects": subjects, "file_rows": rows, "feature_columns": columns, "parquet_bytes": data.stat().st_size,
            "raw_float32_feature_bytes": raw, "caches": len(caches), "cache_bytes": size(caches[0]),
            "run_bytes_after_train": trained, "run_bytes_after_evaluate": size(run, skip=("checkpoints",)),
            "checkpoint_bytes": size(run / "checkpoints"),
            "largest_run_files": dict(sorted(files.items(), key=lambda kv: -kv[1])[:6])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, nargs="+", default=[6000, 60000])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    rows = []
    print(f"{'subjects':>9} {'raw f32 MB':>11} {'cache MB':>9} {'cache/raw':>9} {'run MB':>7} {'+eval MB':>8}")
    for subjects in args.subjects:
        with tempfile.TemporaryDirectory() as tmp:
            row = measure(subjects, args.epochs, Path(tmp))
        row["cache_over_raw"] = row["cache_bytes"] / row["raw_float32_feature_bytes"]
        rows.append(row)
        print(f"{subjects:>9,} {row['raw_float32_feature_bytes'] / 1e6:>11.2f} {row['cache_bytes'] / 1e6:>9.2f} "
              f"{row['cache_over_raw']:>9.4f} {row['run_bytes_after_train'] / 1e6:>7.2f} "
              f"{row['run_bytes_after_evaluate'] / 1e6:>8.2f}", flush=True)
    write_json_atomic(RESULTS, {"epochs": args.epochs, "tier": "standard", "rows": rows,
                                "run_under_5_mb": bool(np.all([r["run_bytes_after_evaluate"] < 5e6 for r in rows])),
                                "cache_at_most_raw": bool(np.all([r["cache_over_raw"] <= 1.0 for r in rows]))})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
