"""`hamnet pipeline --preset quick` on the built-in cohort, timed end to end, once per seed
and the first seed twice (issue 44, must-hold 1): fresh processes, nothing else running.

    python experiments/pipeline_quick.py [--seeds 0 1 2] [--no-repeat] [--work runs/pipeline_quick]
                                         [--out experiments/results/pipeline_quick]

Each run compiles from a fresh XLA cache (a temporary directory), as on a new machine, in
its own directory `<work>/seed<S>[-again]`, with `training.seed: S` in a config file (0 is
the preset's own): the seed of the studies' proposals and trials, the baseline's and the
searched model's training (distillation and pruning keep their own sections' seeds, so
they differ only through the models they start from). Writes `<out>.json`: each run's wall and stage
seconds, table and summary; the speed-up and MAE change over the runs (min / median /
max); and whether the repeat of the first seed gave the same test MAE in every row. The
first run's `report.md`, charts, benchmark measurements (`bench_results.json`) and stage
records (`stages/<stage>.json`) are copied to `<out>/`, so the README's figures come from
files here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # (run as a script: the repository's packages)

from experiments.spread import spread  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402

LIMIT_SECONDS = 900


def run_once(work: Path, seed: int) -> dict[str, Any]:
    """One fresh pipeline in `work` with `training.seed: seed`: its record."""
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    config = work.with_suffix(".yaml")
    config.write_text(f"training:\n  seed: {seed}\n")
    command = [sys.executable, "-m", "hamnet_jax.cli", "pipeline", "--preset", "quick", "--config", str(config),
               "--out", str(work), "--quiet"]
    with tempfile.TemporaryDirectory(prefix="hamnet-xla-cold-") as cache:
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache}
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"pipeline (seed {seed}) failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    report = json.loads((work / "report.json").read_text())
    s = report["summary"]
    print(f"seed {seed}: {seconds:.0f} s wall; {s['final']['technique']}: {s['speedup']:.2f}x at "
          f"{s['mae_change']:+.2%} MAE", flush=True)
    return {"seed": seed, "work": str(work), "command": " ".join(["hamnet", *command[3:]]), "wall_seconds": seconds,
            "within_limit": seconds < LIMIT_SECONDS, "stage_seconds": s["stage_seconds"], "table": report["table"],
            "summary": s, "charts": report["charts"], "stdout": done.stdout.strip().splitlines()[-1]}


def keep_first(run: dict[str, Any], out: Path) -> None:
    """The first run's report, charts, bench measurements and stage records, under `out`."""
    work = Path(run["work"])
    shutil.rmtree(out, ignore_errors=True)
    (out / "stages").mkdir(parents=True)
    for name in ["report.md", *(Path(c).name for c in run["charts"])]:
        shutil.copy2(work / name, out / name)
    if (work / "bench" / "results.json").exists():  # every model's measurements, the exports' included
        shutil.copy2(work / "bench" / "results.json", out / "bench_results.json")
    for marker in work.glob("*/stage.json"):  # what each stage chose and wrote (NAS's front, HPO's pick, ...)
        shutil.copy2(marker, out / "stages" / f"{marker.parent.name}.json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--no-repeat", action="store_true", help="skip the second run of the first seed")
    p.add_argument("--work", default=str(ROOT / "runs" / "pipeline_quick"))
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "pipeline_quick"))
    args = p.parse_args()
    work, out = Path(args.work), Path(args.out)
    runs = [run_once(work / f"seed{s}", s) for s in args.seeds]
    again = None if args.no_repeat else run_once(work / f"seed{args.seeds[0]}-again", args.seeds[0])
    same = None
    if again is not None:
        same = [r["mae"] for r in runs[0]["table"]] == [r["mae"] for r in again["table"]]
    keep_first(runs[0], out)
    result = {"command": f"python experiments/pipeline_quick.py --seeds {' '.join(map(str, args.seeds))}",
              "limit_seconds": LIMIT_SECONDS, "runs": runs, "repeat_of_first_seed": again,
              "same_seed_same_mae": same, "speedup": spread([r["summary"]["speedup"] for r in runs]),
              "mae_change": spread([r["summary"]["mae_change"] for r in runs]),
              "wall_seconds": spread([r["wall_seconds"] for r in runs])}
    write_json_atomic(out.with_suffix(".json"), result)
    print(f"speed-up over seeds {args.seeds}: min {result['speedup']['min']:.2f}x, median "
          f"{result['speedup']['median']:.2f}x, max {result['speedup']['max']:.2f}x; MAE change "
          f"{result['mae_change']['min']:+.2%} .. {result['mae_change']['max']:+.2%}; repeat of seed "
          f"{args.seeds[0]} gave the same MAE in every row: {same}")
    print(Path(runs[0]["work"], "report.md").read_text())


if __name__ == "__main__":
    main()
