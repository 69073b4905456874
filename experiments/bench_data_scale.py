"""Memory and time of `hamnet cohort` and one epoch of `hamnet train` as the cohort grows.

    python experiments/bench_data_scale.py [--sizes 6000,60000,500000] [--out runs/data_scale]

For each size: `hamnet cohort --subjects N` (drawn and written 20,000 subjects at a time),
then `hamnet train --epochs 1 --tier base` on it (the file read in chunks into the run's
memory-mapped cohort cache, batches read from it by rows). Each command runs in its own
process; its peak resident memory is the kernel's (`ru_maxrss` of that child alone, in GiB
= 2^30 bytes: the JSON's `peak_rss_gb` and `cache_gb` fields are GiB), its
time the wall clock (train: compile, cache build, one epoch, validation and test
prediction). A size already measured is kept (delete its row from the JSON to measure it again).
Prints a table; writes experiments/results/bench_data_scale.json and bench_data_scale.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from hamnet_jax.io_atomic import write_json_atomic

RESULTS = Path(__file__).parent / "results" / "bench_data_scale.json"
MEASURE = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
           "code = subprocess.run(sys.argv[1:]).returncode; "
           "print(json.dumps({'code': code, 'seconds': time.perf_counter() - t, "
           "'peak_rss_gb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20}))")


def measured(command: list[str]) -> dict:
    """Wall time and peak RSS of `command`, run as the only child of a fresh process."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["code"]:
        raise SystemExit(f"{' '.join(command)} failed with exit {result['code']}:\n{out.stderr[-3000:]}")
    return result


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    n = [r["subjects"] for r in rows]
    for key, label in (("cohort", "hamnet cohort"), ("train", "hamnet train --epochs 1")):
        a.plot(n, [r[key]["peak_rss_gb"] for r in rows], "o-", label=label)
        b.plot(n, [r[key]["seconds"] for r in rows], "o-", label=label)
    a.axhline(4.0, color="grey", ls="--", lw=1, label="4 GiB")
    for ax, title in ((a, "peak resident memory (GiB)"), (b, "wall time (s)")):
        ax.set_xscale("log")
        ax.set_xlabel("subjects")
        ax.set_title(title)
        ax.legend()
    b.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="6000,60000,500000")
    parser.add_argument("--out", default="runs/data_scale")
    args = parser.parse_args()
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    rows = {r["subjects"]: r for r in json.loads(RESULTS.read_text())["rows"]} if RESULTS.exists() else {}
    hamnet = [sys.executable, "-m", "hamnet_jax.cli"]
    for n in (int(s) for s in args.sizes.split(",")):
        if n in rows:
            continue
        data = root / f"cohort-{n}.parquet"
        cohort = measured([*hamnet, "cohort", "--subjects", str(n), "--seed", "0", "--out", str(data)])
        run = root / f"run-{n}"
        subprocess.run(["rm", "-rf", str(run)], check=True)
        start = time.perf_counter()
        train = measured([*hamnet, "train", "--data", str(data), "--tier", "base", "--epochs", "1",
                          "--out", str(run), "--quiet"])
        train["seconds"] = time.perf_counter() - start
        summary = json.loads((run / "summary.json").read_text())
        cache_bytes = sum(f.stat().st_size for f in (run / "data_cache").rglob("*") if f.is_file())
        rows[n] = {"subjects": n, "file_mb": data.stat().st_size / 2**20, "cohort": cohort, "train": train,
                   "cache_gb": cache_bytes / 2**30, "test_mae": summary["test"].get("mae")}
        write_json_atomic(RESULTS, {"rows": [rows[k] for k in sorted(rows)]})
    plot([rows[k] for k in sorted(rows)], RESULTS.with_suffix(".png"))
    print(f"{'subjects':>9} {'file MB':>8} {'cohort s':>9} {'cohort GiB':>10} {'train s':>8} {'train GiB':>9} "
          f"{'cache GiB':>9} {'s/1k subj':>10}")
    for r in (rows[k] for k in sorted(rows)):
        print(f"{r['subjects']:>9} {r['file_mb']:>8.0f} {r['cohort']['seconds']:>9.1f} "
              f"{r['cohort']['peak_rss_gb']:>10.2f} {r['train']['seconds']:>8.1f} {r['train']['peak_rss_gb']:>9.2f} "
              f"{r['cache_gb']:>9.2f} {1000 * r['train']['seconds'] / r['subjects']:>10.2f}")
    print("peak GiB: the command's peak resident memory; train: one epoch of the base tier, compile, cache build, "
          "validation and test prediction included")


if __name__ == "__main__":
    main()
