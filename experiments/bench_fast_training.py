"""`hamnet train --tier standard` on the default cohort: the defaults against the fast
training options, back to back in one run on the same data (issue 14, must-hold 3).

    python experiments/bench_fast_training.py [--work runs/fast_training] [--fast KEY=VALUE ...]
                                              [--baseline-commit REV]
                                              [--out experiments/results/bench_fast_training.json]

Each side is a fresh `hamnet train` process with an empty XLA cache (imports, compiles, the
cohort cache, training with early stopping, calibration and the test split's MC-dropout
prediction all in its wall time), started from an environment that sets no allocator
(no `LD_PRELOAD`, `GLIBC_TUNABLES` or `HAMNET_MALLOC`): this checkout's `hamnet` picks its
own (hamnet_jax/platform/host_memory.py), a baseline commit's may not. The fast side's training keys
default to `bucket_by_visits: true` (batches of similar visit counts, cut to the visits they
need). Reported: wall seconds,
epochs, test MAE, and the fast / default ratios. A side already measured is kept (delete
its row from the JSON, or pass --again, to measure it anew).

`--baseline-commit REV` adds a third side: the same command with the code of commit REV (a
git worktree under --work; the schema's keys that code does not know are dropped), so a
speed-up since then is measured on both sides on this machine, on the same data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from hamnet_jax.io_atomic import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
FAST = {"bucket_by_visits": True}


def train(name: str, keys: dict, data: Path, work: Path, source: Path | None = None) -> dict:
    """`hamnet train` of the standard tier with training `keys`: this checkout's code, or
    the code at `source` (an older commit's worktree, whose CLI has no --tier: standard was
    its default)."""
    out = work / name
    config = work / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"training": keys}))
    subprocess.run(["rm", "-rf", str(out)], check=True)
    command = [sys.executable, "-m", "hamnet_jax.cli", "train", "--data", str(data.resolve()), "--config",
               str(config.resolve()), "--out", str(out.resolve()), "--quiet"]
    # a fresh, empty XLA cache per side: every side compiles its programs, as a first run does
    # (hamnet's default cache under ~/.cache would serve a side what an earlier run compiled)
    cache = work / f"xla-cache-{name}"
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    # each side as `hamnet train` runs from a plain environment: this code's CLI picks its
    # allocator itself (hamnet_jax/platform/host_memory.py); a baseline's may run with glibc's default
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES", "HAMNET_MALLOC")}
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache.resolve())
    if source is None:
        command += ["--tier", "standard"]
    else:
        schema = yaml.safe_load(data.with_name(data.stem + ".schema.yaml").read_text())
        schema.pop("subject_level", None)  # (added after the baseline commit)
        old_schema = work / f"{name}.schema.yaml"
        old_schema.write_text(yaml.safe_dump(schema, sort_keys=False))
        command += ["--schema", str(old_schema.resolve())]
        env["PYTHONPATH"] = str(source.resolve())
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=source)
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
    ap.add_argument("--baseline-commit", metavar="REV", help="also train with the code of commit REV")
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
    if args.baseline_commit:
        rev = subprocess.run(["git", "rev-parse", args.baseline_commit], capture_output=True, text=True, check=True,
                             cwd=ROOT).stdout.strip()
        if store.get("baseline", {}).get("commit") != rev:
            source = work / f"src-{rev[:12]}"
            if not source.exists():
                subprocess.run(["git", "worktree", "add", "--detach", str(source.resolve()), rev], check=True, cwd=ROOT)
            store["baseline"] = {**train("baseline", {}, data, work, source), "commit": rev}
            write_json_atomic(out, store)
    d, f = store["defaults"], store["fast"]
    store["time_ratio"] = f["seconds"] / d["seconds"]
    store["mae_ratio"] = f["test_mae"] / d["test_mae"]
    if "baseline" in store:
        store["defaults_vs_baseline_time_ratio"] = d["seconds"] / store["baseline"]["seconds"]
        store["defaults_vs_baseline_mae_ratio"] = d["test_mae"] / store["baseline"]["test_mae"]
    write_json_atomic(out, store)
    print(f"{'side':<10}{'wall s':>9}{'epochs':>8}{'test MAE':>10}{'padding':>9}  training keys")
    for name in ("baseline", "defaults", "fast"):
        if name in store:
            r = store[name]
            print(f"{name:<10}{r['seconds']:>9.1f}{r['epochs_run']:>8}{r['test_mae']:>10.3f}"
                  f"{r['padding_fraction']:>9.1%}  {r['training_keys']}" + (f" (commit {r['commit'][:12]})"
                                                                          if "commit" in r else ""))
    print(f"fast / defaults: wall time {store['time_ratio']:.2f}x, test MAE {store['mae_ratio']:.3f}x")
    if "baseline" in store:
        print(f"defaults / baseline commit: wall time {store['defaults_vs_baseline_time_ratio']:.2f}x, "
              f"test MAE {store['defaults_vs_baseline_mae_ratio']:.3f}x")


if __name__ == "__main__":
    main()
