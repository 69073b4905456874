"""`hamnet pipeline --preset quick` on the built-in cohort, timed end to end (issue 19,
must-hold 1): one fresh process, cohort included, nothing else running.

    python experiments/pipeline_quick.py [--work runs/pipeline_quick] [--resume]
                                         [--out experiments/results/pipeline_quick]

The pipeline compiles from a fresh XLA cache (a temporary directory), as on a new machine.
Writes `<out>.json` (wall seconds, each stage's seconds, the report's table and summary)
and copies the pipeline's `report.md`, charts, benchmark measurements
(`bench_results.json`) and stage records (`stages/<stage>.json`) to `<out>/`, so the README's figures come
from files here. `--resume` continues a killed run in --work (its wall time is then the
rerun's, and the JSON says so).
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

from hamnet_jax.io_atomic import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=str(ROOT / "runs" / "pipeline_quick"))
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "pipeline_quick"))
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    work, out = Path(args.work), Path(args.out)
    if not args.resume:
        shutil.rmtree(work, ignore_errors=True)
    command = [sys.executable, "-m", "hamnet_jax.cli", "pipeline", "--preset", "quick", "--out", str(work),
               "--quiet"]
    with tempfile.TemporaryDirectory(prefix="hamnet-xla-cold-") as cache:
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache}
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"pipeline failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    report = json.loads((work / "report.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    for name in ["report.md", *(Path(c).name for c in report["charts"])]:
        shutil.copy2(work / name, out / name)
    if (work / "bench" / "results.json").exists():  # every model's measurements, the exports' included
        shutil.copy2(work / "bench" / "results.json", out / "bench_results.json")
    (out / "stages").mkdir(exist_ok=True)
    for marker in work.glob("*/stage.json"):  # what each stage chose and wrote (NAS's front, HPO's pick, ...)
        shutil.copy2(marker, out / "stages" / f"{marker.parent.name}.json")
    s = report["summary"]
    result = {"command": " ".join(["hamnet", *command[3:]]), "wall_seconds": seconds, "resumed": args.resume,
              "limit_seconds": 900, "within_limit": seconds < 900, "stage_seconds": s["stage_seconds"],
              "table": report["table"], "summary": s, "stdout": done.stdout.strip().splitlines()[-1]}
    write_json_atomic(out.with_suffix(".json"), result)
    print(f"{seconds:.0f} s wall (limit 900 s)")
    for stage, sec in s["stage_seconds"].items():
        print(f"  {stage:<11} {sec:7.1f} s")
    print((work / "report.md").read_text())


if __name__ == "__main__":
    main()
