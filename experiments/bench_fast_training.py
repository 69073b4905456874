"""`hamnet train --tier standard` on the default cohort: the defaults against the fast
training options, back to back in one run on the same data (issue 14, must-hold 3).

    python experiments/bench_fast_training.py [--work runs/fast_training] [--fast KEY=VALUE ...]
                                              [--out experiments/results/bench_fast_training.json]

Each side is a fresh `hamnet train` process (imports, compiles, the cohort cache, training
with early stopping, calibration and the test split's MC-dropout prediction all in its wall
time). The fast side's training keys default to `bucket_by_visits: true` (batches of similar
visit counts, cut to the visits they need) and `dropout_rng: rbg`. Reported: wall seconds,
epochs, test MAE, and the fast / default ratios. A side already measured is kept (delete
its row from the JSON, or pass --again, to measure it anew).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from hamnet_jax.io_atomic import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
FAST = {"bucket_by_visits": True}


def train(name: str, keys: dict, data: Path, work: Path) -> dict:
    out = work / name
    config = work / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"training": keys}))
    subprocess.run(["rm", "-rf", str(out)], check=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hamnet_jax.cli", "train", "--data", str(data), "--tier", "standard",
                           "--config", str(config), "--out", str(out), "--quiet"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{name}: hamnet train failed:\n{done.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"training_keys": keys, "seconds": seconds, "test_mae": summary["test"]["mae"],
            "best_epoch": summary["best_epoch"], "epochs_run": summary["epochs_run"],
            "padding_fraction": summary["padding_fraction"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/fast_training")
    ap.add_argument("--fast", nargs="*", metavar="KEY=VALUE", help="the fast side's training keys (YAML values)")
    ap.add_argument("--again", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bench_fast_training.json"))
    args = ap.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    fast = dict(FAST) if args.fast is None else {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in args.fast)}
    data = work / "cohort.parquet"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "hamnet_jax.cli", "cohort", "--out", str(data)], check=True)
    store = json.loads(out.read_text()) if out.exists() and not args.again else {}
    if store.get("fast", {}).get("training_keys", fast) != fast:
        store.pop("fast")
    for name, keys in (("defaults", {}), ("fast", fast)):
        if name not in store:
            store[name] = train(name, keys, data, work)
            write_json_atomic(out, store)
    d, f = store["defaults"], store["fast"]
    store["time_ratio"] = f["seconds"] / d["seconds"]
    store["mae_ratio"] = f["test_mae"] / d["test_mae"]
    write_json_atomic(out, store)
    print(f"{'side':<10}{'wall s':>9}{'epochs':>8}{'test MAE':>10}{'padding':>9}  training keys")
    for name in ("defaults", "fast"):
        r = store[name]
        print(f"{name:<10}{r['seconds']:>9.1f}{r['epochs_run']:>8}{r['test_mae']:>10.3f}"
              f"{r['padding_fraction']:>9.1%}  {r['training_keys']}")
    print(f"fast / defaults: wall time {store['time_ratio']:.2f}x, test MAE {store['mae_ratio']:.3f}x")


if __name__ == "__main__":
    main()
