"""Training speed and compiled memory, measured in one run on one machine:

1. per tier (fp32, batch 256): samples/s and achieved FLOP/s against a float32 matmul
   measured in the same run;
2. standard tier at batch 256: fp32, bf16, fp16 (loss scaling), remat, gradient
   accumulation, attention kernels, and the PyTorch reference of the same architecture
   (eager and torch.compile, when torch is installed: the `bench-torch` extra);
3. temporary memory of the compiled step at long visit histories (64 and 512 visits) for
   naive vs blockwise attention and remat.

    python experiments/bench_train.py [--batch 256] [--steps 10] [--out experiments/results/bench_train.json]

Memory is XLA's memory analysis of the compiled step (arguments + outputs + temporaries
- aliased buffers); FLOPs come from XLA's cost analysis of the compiled step.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hamnet_jax.data.batch import random_batch  # noqa: E402
from hamnet_jax.data.cohort import CohortDims  # noqa: E402
from hamnet_jax.data.cohort_features import LIFESTYLE_CATEGORICAL  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.models.config import TIERS, HAMNetConfig  # noqa: E402
from hamnet_jax.models.hamnet import HAMNet  # noqa: E402
from hamnet_jax.training.dynamic_batching import compiled_memory_bytes  # noqa: E402
from hamnet_jax.training.precision import resolve_policy  # noqa: E402
from hamnet_jax.training.state import OptimizerConfig, count_params, create_train_state  # noqa: E402
from hamnet_jax.training.steps import train_step  # noqa: E402

MIB = 2**20


def cohort_config(tier: str, **overrides) -> HAMNetConfig:
    dims = CohortDims()
    return HAMNetConfig.from_tier(
        tier, clinical_dim=dims.clinical, imaging_dim=dims.imaging, genetic_dim=dims.genetic,
        lifestyle_dim=dims.lifestyle_numeric,
        lifestyle_cardinalities=tuple(len(v) for v in LIFESTYLE_CATEGORICAL.values()), **overrides)


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


def bench_jax(name: str, cfg: HAMNetConfig, batch_size: int, steps: int, precision: str = "fp32",
              accumulation: int = 1, visits: int = 4) -> dict:
    policy = resolve_policy(precision)
    cfg = cfg.replace(dtype=policy.compute_dtype)
    batch = jax.tree_util.tree_map(jnp.asarray, random_batch(cfg, batch_size, visits))
    state = create_train_state(HAMNet(cfg), batch, jax.random.key(0), OptimizerConfig(), policy)
    key = jax.random.key(1)
    t0 = time.perf_counter()
    compiled = train_step.lower(state, batch, key, accumulation_steps=accumulation).compile()
    compile_s = time.perf_counter() - t0
    memory = compiled.memory_analysis()
    for _ in range(2):  # warm-up
        state, m = train_step(state, batch, key, accumulation_steps=accumulation)
    jax.block_until_ready(m)
    start = time.perf_counter()
    for i in range(steps):
        state, m = train_step(state, batch, jax.random.fold_in(key, i), accumulation_steps=accumulation)
    jax.block_until_ready(m)
    per_step = (time.perf_counter() - start) / steps
    flops = compiled_flops(compiled)
    return {"name": name, "framework": "jax", "device": jax.default_backend(), "tier": cfg.tier,
            "params": count_params(state.params),
            "batch": batch_size, "visits": visits, "samples_per_s": batch_size / per_step, "step_ms": per_step * 1e3,
            "peak_mib": compiled_memory_bytes(compiled) / MIB, "temp_mib": memory.temp_size_in_bytes / MIB,
            "flops_per_step": flops, "achieved_flops_per_s": flops / per_step, "compile_s": compile_s}


def bench_torch(cfg: HAMNetConfig, batch_size: int, steps: int, compile_model: bool) -> dict | None:
    try:
        import torch

        from experiments.baselines.hamnet_torch import HAMNetTorch, batch_to_torch, make_train_step
    except ImportError:
        return None
    torch.manual_seed(0)
    model = HAMNetTorch(cfg)
    step = make_train_step(model)
    if compile_model:
        step = torch.compile(step)
    batch = batch_to_torch(random_batch(cfg, batch_size, 4))
    t0 = time.perf_counter()
    step(batch)  # compiles under torch.compile
    compile_s = time.perf_counter() - t0
    step(batch)
    start = time.perf_counter()
    for _ in range(steps):
        step(batch)
    per_step = (time.perf_counter() - start) / steps
    return {"name": "torch " + ("compile" if compile_model else "eager"), "framework": f"torch {torch.__version__}",
            "tier": cfg.tier, "params": sum(p.numel() for p in model.parameters()), "batch": batch_size, "visits": 4,
            "samples_per_s": batch_size / per_step, "step_ms": per_step * 1e3, "peak_mib": None, "temp_mib": None,
            "compile_s": compile_s, "threads": torch.get_num_threads(), "device": "cpu"}


def long_history_memory(batch_size: int, visits: int) -> list[dict]:
    base = cohort_config("standard")
    rows = []
    for name, change in (("naive attention", {}), ("remat full", {"remat_policy": "full"}),
                         ("remat save_dots", {"remat_policy": "save_dots"}),
                         ("blockwise attention", {"attention": "blockwise", "attention_block_size": 64}),
                         ("dot_product attention", {"attention": "dot_product"})):
        cfg = base.replace(**change)
        batch = random_batch(cfg, batch_size, visits)
        state = create_train_state(HAMNet(cfg), batch, jax.random.key(0), OptimizerConfig())
        compiled = train_step.lower(state, batch, jax.random.key(1)).compile()
        rows.append({"name": name, "visits": visits, "batch": batch_size,
                     "temp_mib": compiled.memory_analysis().temp_size_in_bytes / MIB})
    for r in rows:
        r["cut_vs_naive"] = rows[0]["temp_mib"] / r["temp_mib"]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--tiers", nargs="+", default=list(TIERS))
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", default="experiments/results/bench_train.json")
    args = p.parse_args()

    peak = matmul_flops_per_s()
    tiers = [bench_jax(f"{t} fp32", cohort_config(t), args.batch, args.steps) for t in args.tiers]
    std = cohort_config("standard")
    variants = [
        bench_jax("fp32", std, args.batch, args.steps),
        bench_jax("bf16", std, args.batch, args.steps, precision="bf16"),
        bench_jax("fp16 + loss scaling", std, args.batch, args.steps, precision="fp16"),
        bench_jax("fp32 remat full", std.replace(remat_policy="full"), args.batch, args.steps),
        bench_jax("fp32 accumulation x4", std, args.batch, args.steps, accumulation=4),
        bench_jax("fp32 dot_product attention", std.replace(attention="dot_product"), args.batch, args.steps),
        bench_jax("fp32 blockwise attention", std.replace(attention="blockwise"), args.batch, args.steps),
    ]
    if not args.no_torch:
        variants += [r for r in (bench_torch(std, args.batch, args.steps, False),
                                 bench_torch(std, args.batch, args.steps, True)) if r]
    memory = long_history_memory(32, 64) + long_history_memory(4, 512)

    device = jax.devices()[0]
    print(f"device: {device.platform} ({device.device_kind}), {jax.device_count()} device(s); "
          f"matmul reference {peak / 1e9:.1f} GFLOP/s (float32 2048x2048)")
    print(f"\n{'tier':<22}{'params':>10}{'samples/s':>12}{'step ms':>10}{'GFLOP/s':>10}{'of matmul':>11}")
    for r in tiers:
        r["fraction_of_matmul"] = r["achieved_flops_per_s"] / peak
        print(f"{r['name']:<22}{r['params']:>10,}{r['samples_per_s']:>12.0f}{r['step_ms']:>10.1f}"
              f"{r['achieved_flops_per_s'] / 1e9:>10.1f}{r['fraction_of_matmul']:>11.1%}")
    eager = next((r for r in variants if r["name"] == "torch eager"), None)
    print(f"\nstandard tier, batch {args.batch}, 4 visits"
          + ("" if device.platform == "cpu" else " (torch rows: the CPU build, on the host CPU)"))
    print(f"{'configuration':<30}{'samples/s':>11}{'step ms':>10}{'peak MiB':>10}{'vs torch eager':>16}")
    for r in variants:
        r["vs_torch_eager"] = r["samples_per_s"] / eager["samples_per_s"] if eager else None
        peak_mib = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "n/a"
        ratio = f"{r['vs_torch_eager']:.2f}x" if eager else "-"
        print(f"{r['name']:<30}{r['samples_per_s']:>11.0f}{r['step_ms']:>10.1f}{peak_mib:>10}{ratio:>16}")
    print("\ncompiled step temporary memory, standard tier, long visit histories")
    print(f"{'configuration':<26}{'visits':>7}{'batch':>7}{'temp MiB':>10}{'cut vs naive':>14}")
    for r in memory:
        print(f"{r['name']:<26}{r['visits']:>7}{r['batch']:>7}{r['temp_mib']:>10.1f}{r['cut_vs_naive']:>13.2f}x")
    result = {"device": str(device), "platform": device.platform, "host": platform.node(), "jax": jax.__version__,
              "matmul_flops_per_s": peak, "tiers": tiers, "variants": variants, "long_history_memory": memory}
    write_json_atomic(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
