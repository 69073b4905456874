"""The standard-tier train step under each allocator `hamnet` can run with
(hamnet_jax/platform/host_memory.py): glibc's malloc on 4 KiB pages, glibc with huge pages, and
tcmalloc when it is installed, in alternating fresh processes on the same machine:
samples/s, page faults and system time per step, and the step's scratch size.

    python experiments/bench_host_memory.py [--batch 128] [--steps 30] [--pairs 2]
                                            [--out experiments/results/bench_host_memory.json]

An allocator is chosen when a process starts, so each side is its own process
(`GLIBC_TUNABLES=glibc.malloc.hugetlb=0` or `=1`, or `LD_PRELOAD` of tcmalloc); the sides
alternate `--pairs` times so the machine's load moves all alike. Each process compiles the
step once, warms it up, then times 3 rounds of `--steps` steps and reports their median,
with the page faults and the system CPU time of those rounds (`resource.getrusage`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hamnet_jax.platform.host_memory import CHOICE_VARIABLE, find_tcmalloc, malloc_in_use  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402

# side name -> the environment it starts with (on top of this one, its allocator settings removed)
SIDES: dict[str, dict[str, str]] = {
    "glibc malloc": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"},
    "glibc, huge pages": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    "tcmalloc": {"LD_PRELOAD": find_tcmalloc() or ""},
}


def measure(batch: int, steps: int) -> dict:
    """This process's step: samples/s (median of 3 rounds), faults and system seconds per step."""
    sys.path.insert(0, str(ROOT / "experiments"))
    from bench_train import cohort_config, jax_timer

    info, run = jax_timer("standard fp32", cohort_config("standard"), batch)
    run(3)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    rates = [run(steps) for _ in range(3)]
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
    n = 3 * (steps + 1)  # each round runs one untimed warm-up step too
    return {"samples_per_s": statistics.median(rates), "samples_per_s_runs": rates,
            "page_faults_per_step": (after.ru_minflt - before.ru_minflt) / n,
            "system_s_per_step": (after.ru_stime - before.ru_stime) / n,
            "user_s_per_step": (after.ru_utime - before.ru_utime) / n, "wall_s": wall,
            "temp_mib": info["temp_mib"], "malloc": malloc_in_use()}


def side(name: str, batch: int, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD", CHOICE_VARIABLE)}
    done = subprocess.run([sys.executable, __file__, "--measure", "--batch", str(batch), "--steps", str(steps)],
                          env={**env, **SIDES[name]}, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"measuring ({name}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128, help="hamnet train's default batch size")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--pairs", type=int, default=2, help="rounds of alternating processes, one per allocator")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bench_host_memory.json"))
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # one side, in this process
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.batch, args.steps)))
        return
    names = [n for n, env in SIDES.items() if all(env.values())]  # (tcmalloc: when installed)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(args.pairs):
        for name in names:
            runs[name].append(side(name, args.batch, args.steps))
    rows = []
    for name, rs in runs.items():
        rows.append({"name": name, "runs": rs, **{k: statistics.median(r[k] for r in rs) for k in (
            "samples_per_s", "page_faults_per_step", "system_s_per_step", "user_s_per_step", "temp_mib")}})
    base = rows[0]
    print(f"standard tier train step, batch {args.batch}; medians of {args.pairs} alternating processes")
    print(f"{'malloc':<20}{'samples/s':>11}{'faults/step':>13}{'sys ms/step':>13}{'user ms/step':>14}"
          f"{'scratch MiB':>13}{'speed-up':>10}")
    for r in rows:
        r["speedup"] = r["samples_per_s"] / base["samples_per_s"]
        print(f"{r['name']:<20}{r['samples_per_s']:>11.0f}{r['page_faults_per_step']:>13.0f}"
              f"{1e3 * r['system_s_per_step']:>13.1f}{1e3 * r['user_s_per_step']:>14.1f}{r['temp_mib']:>13.1f}"
              f"{r['speedup']:>9.2f}x")
    write_json_atomic(Path(args.out), {"batch": args.batch, "steps": args.steps, "pairs": args.pairs, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
