"""Training throughput per tier at batch 256, and achieved FLOP/s as a fraction of the
matrix-multiply FLOP/s measured on the same machine in the same run.

    python experiments/bench_train.py [--batch 256] [--steps 20] [--out experiments/results/bench_train.json]

FLOPs per step come from XLA's cost analysis of the compiled `train_step`; the matmul
reference is a jitted float32 [n, n] @ [n, n] (2 n^3 FLOPs) timed after warm-up.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from hamnet_jax.data.batch import random_batch
from hamnet_jax.data.cohort import CohortDims
from hamnet_jax.data.cohort_features import LIFESTYLE_CATEGORICAL
from hamnet_jax.io_atomic import write_json_atomic
from hamnet_jax.models.config import TIERS, HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.training.state import OptimizerConfig, count_params, create_train_state
from hamnet_jax.training.steps import train_step


def compiled_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", float("nan")))


def matmul_flops_per_s(n: int = 2048, reps: int = 10) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(reps):
        out = f(a)
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def bench_tier(tier: str, batch_size: int, steps: int) -> dict:
    dims = CohortDims()
    cfg = HAMNetConfig.from_tier(
        tier, clinical_dim=dims.clinical, imaging_dim=dims.imaging, genetic_dim=dims.genetic,
        lifestyle_dim=dims.lifestyle_numeric,
        lifestyle_cardinalities=tuple(len(v) for v in LIFESTYLE_CATEGORICAL.values()),
    )
    batch = jax.tree_util.tree_map(jnp.asarray, random_batch(cfg, batch_size, 4))
    state = create_train_state(HAMNet(cfg), batch, jax.random.key(0), OptimizerConfig())
    key = jax.random.key(1)
    t0 = time.perf_counter()
    compiled = train_step.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - t0
    flops = compiled_flops(compiled)
    for _ in range(3):  # warm-up
        state, m = train_step(state, batch, key)
    jax.block_until_ready(m)
    start = time.perf_counter()
    for i in range(steps):
        state, m = train_step(state, batch, jax.random.fold_in(key, i))
    jax.block_until_ready(m)
    per_step = (time.perf_counter() - start) / steps
    return {"tier": tier, "params": count_params(state.params), "batch": batch_size,
            "samples_per_s": batch_size / per_step, "step_ms": per_step * 1e3,
            "flops_per_step": flops, "achieved_flops_per_s": flops / per_step, "compile_s": compile_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--tiers", nargs="+", default=list(TIERS))
    p.add_argument("--out", default="experiments/results/bench_train.json")
    args = p.parse_args()

    peak = matmul_flops_per_s()
    rows = [bench_tier(t, args.batch, args.steps) for t in args.tiers]
    for r in rows:
        r["fraction_of_matmul"] = r["achieved_flops_per_s"] / peak
    device = jax.devices()[0]
    print(f"device: {device.platform} ({device.device_kind}), {jax.device_count()} device(s); "
          f"matmul reference {peak / 1e9:.1f} GFLOP/s (float32 2048x2048)")
    print(f"{'tier':<15}{'params':>10}{'samples/s':>12}{'step ms':>10}{'GFLOP/step':>12}{'GFLOP/s':>10}"
          f"{'of matmul':>11}")
    for r in rows:
        print(f"{r['tier']:<15}{r['params']:>10,}{r['samples_per_s']:>12.0f}{r['step_ms']:>10.1f}"
              f"{r['flops_per_step'] / 1e9:>12.2f}{r['achieved_flops_per_s'] / 1e9:>10.1f}"
              f"{r['fraction_of_matmul']:>11.1%}")
    result = {"device": str(device), "platform": device.platform, "host": platform.node(),
              "jax": jax.__version__, "matmul_flops_per_s": peak, "rows": rows}
    write_json_atomic(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
