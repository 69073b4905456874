"""The README's training-speed figure over several fresh runs (issue 44, must-holds 3 and 4):
`experiments/bench_train.py`'s standard-tier fp32 row against PyTorch eager, run `--runs`
times, each in a fresh process with a cold XLA cache, nothing else running.

    python experiments/bench_train_runs.py [--runs 3] [--reps 7] [--steps 10]
        [--malloc auto|tcmalloc|huge-pages|system] [--work runs/bench_train_runs]
        [--out experiments/results/bench_train_runs_<malloc>.json]

Each run is `bench_train.py --tiers standard --only fp32 --steps S --reps R --malloc M`: the
median of R interleaved rounds of JAX fp32 and PyTorch eager (the `bench-torch` extra), so
the machine's load moves both sides alike. Writes each run's medians and the spread over runs
(min / median / max) of JAX's samples/s, PyTorch eager's and their ratio, with the allocator
every run reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # (run as a script: the repository's packages)

from experiments.spread import spread  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.platform.host_memory import CHOICES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run_once(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One fresh `bench_train.py` process: the fp32 row, PyTorch eager's and the allocator."""
    command = [sys.executable, str(ROOT / "experiments" / "bench_train.py"), "--tiers", "standard", "--only", "fp32",
               "--steps", str(args.steps), "--reps", str(args.reps), "--malloc", args.malloc, "--out", str(out)]
    with tempfile.TemporaryDirectory(prefix="hamnet-xla-cold-") as cache:
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "JAX_COMPILATION_CACHE_DIR": cache})
    if done.returncode != 0:
        sys.exit(f"bench_train.py failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result = json.loads(out.read_text())
    rows = {v["name"]: v for v in result["variants"]}
    if "torch eager" not in rows:
        sys.exit("bench_train.py measured no PyTorch row: install the bench-torch extra "
                 "(uv sync --locked --extra dev --extra bench-torch)")
    fp32, torch = rows["fp32"], rows["torch eager"]
    row = {"malloc": result["malloc"], "jax_samples_per_s": fp32["samples_per_s"],
           "torch_eager_samples_per_s": torch["samples_per_s"], "vs_torch_eager": fp32["vs_torch_eager"],
           "vs_torch_eager_rounds": [fp32["vs_torch_eager_min"], fp32["vs_torch_eager_max"]],
           "torch": torch["framework"], "file": str(out)}
    print(f"run: JAX {row['jax_samples_per_s']:,.0f} samples/s, PyTorch eager "
          f"{row['torch_eager_samples_per_s']:,.0f}: {row['vs_torch_eager']:.2f}x ({row['malloc']})", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--reps", type=int, default=7, help="interleaved rounds in each run")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--malloc", default="auto", choices=CHOICES)
    p.add_argument("--work", default=str(ROOT / "runs" / "bench_train_runs"))
    p.add_argument("--out", help="default: experiments/results/bench_train_runs_<malloc>.json")
    args = p.parse_args()
    if args.runs < 1 or args.reps < 1:
        p.error("--runs and --reps must be at least 1")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    runs = [run_once(work / f"run{i}.json", args) for i in range(args.runs)]
    mallocs = sorted({r["malloc"] for r in runs})
    out = Path(args.out or ROOT / "experiments" / "results" / f"bench_train_runs_{args.malloc}.json")
    result = {"command": " ".join(["python experiments/bench_train_runs.py", *sys.argv[1:]]), "malloc": mallocs,
              "reps": args.reps, "steps": args.steps, "runs": runs,
              **{key: spread([r[key] for r in runs])
                 for key in ("vs_torch_eager", "jax_samples_per_s", "torch_eager_samples_per_s")}}
    write_json_atomic(out, result)
    s = result["vs_torch_eager"]
    print(f"JAX fp32 over PyTorch eager, {args.runs} runs ({', '.join(mallocs)}): min {s['min']:.2f}x, "
          f"median {s['median']:.2f}x, max {s['max']:.2f}x -> {out}")


if __name__ == "__main__":
    main()
