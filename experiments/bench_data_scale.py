"""Memory and time of `hamnet cohort` and one epoch of `hamnet train` as the cohort grows.

    python experiments/bench_data_scale.py [--sizes 6000,60000,500000] [--serve-sizes 6000,60000]
                                           [--out runs/data_scale] [--again | --retrain]

For each size: `hamnet cohort --subjects N` (drawn and written 20,000 subjects at a time),
then `hamnet train --epochs 1 --tier base` on it (the file read in chunks into the run's
memory-mapped cohort cache, batches read from it by rows); at the `--serve-sizes`, also
`hamnet evaluate --baseline-features last-visit` (the test split through the run's cache,
20 MC-dropout passes over it and over each of its four modality-removal copies, baselines on
at most 20,000 training subjects) and `hamnet predict` on every subject of the file (a
temporary cache, 2,048 subjects at a time). Each command runs in its own
process; its peak resident memory is the kernel's (`ru_maxrss` of that child alone, in GiB
= 2^30 bytes: the JSON's `peak_rss_gb` and `cache_gb` fields are GiB), its
time the wall clock (train: compile, cache build, one epoch, validation and test
prediction). A size already measured is kept (`--again` measures every size anew;
`--retrain` keeps the cohort files and their figures and measures the rest anew).
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
    parser.add_argument("--serve-sizes", default="6000,60000", help="sizes at which evaluate and predict are measured")
    parser.add_argument("--out", default="runs/data_scale")
    parser.add_argument("--again", action="store_true", help="measure every size anew")
    parser.add_argument("--retrain", action="store_true",
                        help="measure train, evaluate and predict anew, keeping a size's cohort file and its figures")
    args = parser.parse_args()
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    serve_sizes = {int(s) for s in args.serve_sizes.split(",") if s}
    rows = ({r["subjects"]: r for r in json.loads(RESULTS.read_text())["rows"]}
            if RESULTS.exists() and not args.again else {})
    cohorts = {n: r["cohort"] for n, r in rows.items()}
    if args.retrain:
        rows = {}
    hamnet = [sys.executable, "-m", "hamnet_jax.cli"]
    for n in (int(s) for s in args.sizes.split(",")):
        if n in rows:
            continue
        data = root / f"cohort-{n}.parquet"
        cohort = cohorts[n] if n in cohorts and data.exists() else \
            measured([*hamnet, "cohort", "--subjects", str(n), "--seed", "0", "--out", str(data)])
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
        if n in serve_sizes:
            rows[n]["evaluate"] = measured([*hamnet, "evaluate", "--run", str(run), "--data", str(data),
                                            "--baseline-features", "last-visit", "--quiet"])
            rows[n]["evaluate"]["test_subjects"] = json.loads((run / "eval.json").read_text())["test_subjects"]
            rows[n]["predict"] = measured([*hamnet, "predict", "--run", str(run), "--data", str(data),
                                           "--out", str(run / "predictions.csv")])
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
    for r in (rows[k] for k in sorted(rows) if "evaluate" in rows[k]):
        e, p = r["evaluate"], r["predict"]
        print(f"{r['subjects']:>9} subjects: evaluate {e['seconds']:.1f} s, {e['peak_rss_gb']:.2f} GiB "
              f"({e['test_subjects']} test subjects); predict {p['seconds']:.1f} s, {p['peak_rss_gb']:.2f} GiB")


if __name__ == "__main__":
    main()
