"""How long `hamnet evaluate` takes on the default cohort, the first time (baselines fitted,
HAMNet's MC-dropout predictions computed) and the second (both reused from the run
directory), for both baseline feature modes (HAMNet's predictions do not depend on the mode:
the last-visit evaluates reuse the ones the all-visits evaluate made).

    python experiments/bench_evaluate.py [--run runs/main/fp32] [--data runs/main/cohort.parquet]

Each evaluate is a fresh `hamnet evaluate` process (what a user waits for, imports and
compiles included) on a copy of the run without its checkpoints, so the run itself keeps
no cache: the first evaluate starts from none. Prints a table; writes experiments/results/bench_evaluate.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hamnet_jax.io_atomic import write_json_atomic

RESULTS = Path(__file__).parent / "results" / "bench_evaluate.json"


def timed_evaluate(run: Path, data: str, features: str) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hamnet_jax.cli", "evaluate", "--run", str(run), "--data", data,
                           "--baseline-features", features, "--quiet"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr)
    result = json.loads((run / "eval.json").read_text())
    return {"features": features, "seconds": seconds, "baselines_cached": result["baselines_cached"],
            "predictions_cached": result["predictions_cached"],
            "mae": {k: v["mae"] for k, v in result["rows"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/main/fp32")
    parser.add_argument("--data", default="runs/main/cohort.parquet")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("checkpoints", "tb", "plots", "baselines-*.skops",
                                                                    "predictions-*.npz"))
        for features in ("all-visits", "last-visit"):
            for attempt in ("first", "second"):
                row = {"evaluate": attempt, **timed_evaluate(run, args.data, features)}
                rows.append(row)
                print(f"{features:<11} {attempt:<7} {row['seconds']:7.1f} s  baselines cached="
                      f"{row['baselines_cached']}  predictions cached={row['predictions_cached']}  "
                      f"HGB MAE {row['mae'].get('hist_gradient_boosting', float('nan')):.4f}", flush=True)
    write_json_atomic(RESULTS, {"run": args.run, "data": args.data, "rows": rows})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
