"""Training speed and compiled memory, measured in one run on one machine:

1. per tier (fp32, batch 256): samples/s and achieved FLOP/s against a float32 matmul
   measured in the same run (once at the start of every round of the interleaved rows:
   their median);
2. standard tier at batch 256 (genotypes subject-level, as the default cohort's schema
   says; 1-4 real visits per subject, the per-visit work packed onto the real visits as
   `fit` trains: `HAMNet(packed_visits=)`, compiled with `fit`'s XLA options): fp32, fp32 on
   every visit slot, fp32 with XLA:CPU's multi-threaded Eigen (the A/B of those options), fp32 with
   Flax's `bernoulli` dropout masks (the A/B of `models.layers.keep_mask`), fp32 with masks
   from `jax.random.bits` (the A/B of the unrolled Threefry, `platform.random_bits`), fp32 with
   dropout dividing by a constant (the A/B of `models.layers.opaque_scalar`), fp32 with the
   weight gradients as JAX's transpose rule writes them (the A/B of `platform.matmul`), fp32 with rbg /
   unsafe_rbg dropout keys (`training.dropout_rng`: masks from XLA's RngBitGenerator), fp32
   with the genotypes encoded at every visit, bf16, fp16 (loss scaling), remat, gradient
   accumulation, attention kernels, and the PyTorch
   reference of the same architecture (eager and torch.compile, when torch is installed:
   the `bench-torch` extra), each the median of `--reps` interleaved repetitions (every
   round runs every row once, so the machine's load moves all rows alike), with the spread;
3. temporary memory of the compiled step at long visit histories (64 and 512 visits) for
   naive vs blockwise attention and remat.

    python experiments/bench_train.py [--batch 256] [--steps 10] [--reps 3] [--only ROW ...] [--no-torch]
                                      [--malloc auto|tcmalloc|huge-pages|system]
                                      [--out experiments/results/bench_train.json]

The process runs with the allocator `hamnet` picks (tcmalloc when installed, else glibc's
huge-page malloc: it re-executes itself as `hamnet` does, hamnet_jax/platform/host_memory.py), JAX
and PyTorch rows alike; `--malloc` picks another.

Memory is XLA's memory analysis of the compiled step (arguments + outputs + temporaries
- aliased buffers); FLOPs come from XLA's cost analysis of the compiled step.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hamnet_jax.errors import InputError  # noqa: E402
from hamnet_jax.platform.host_memory import CHOICE_VARIABLE, CHOICES, malloc_in_use, reexec_with_fast_malloc  # noqa: E402

if __name__ == "__main__":  # before JAX is imported: the allocator is chosen when the process starts
    _malloc = argparse.ArgumentParser(add_help=False)
    _malloc.add_argument("--malloc", choices=CHOICES, default="auto")
    os.environ[CHOICE_VARIABLE] = _malloc.parse_known_args()[0].malloc
    if os.environ[CHOICE_VARIABLE] == "system" and malloc_in_use() != "system":
        raise SystemExit(f"--malloc system: this process was started with {malloc_in_use()}; start it without "
                         "(LD_PRELOAD and GLIBC_TUNABLES are read when a process starts)")
    try:  # both frameworks in this process: as `hamnet` runs (hamnet_jax/platform/host_memory.py)
        reexec_with_fast_malloc()
    except InputError as e:
        raise SystemExit(f"--malloc: {e}") from None

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from hamnet_jax.data.batch import random_batch  # noqa: E402
from hamnet_jax.cohort.default import CohortDims  # noqa: E402
from hamnet_jax.cohort.features import LIFESTYLE_CATEGORICAL  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.models.config import TIERS, HAMNetConfig  # noqa: E402
from hamnet_jax.models import layers  # noqa: E402
from hamnet_jax.models.hamnet import HAMNet  # noqa: E402
from hamnet_jax.platform.matmul import without_gradient_rule  # noqa: E402
from hamnet_jax.training.dynamic_batching import compiled_memory_bytes  # noqa: E402
from hamnet_jax.training.precision import resolve_policy  # noqa: E402
from hamnet_jax.training.state import OptimizerConfig, count_params, create_train_state  # noqa: E402
from hamnet_jax.training.steps import step_compiler_options, train_step, train_step_fn  # noqa: E402
from hamnet_jax.data.visit_packing import packing_rows  # noqa: E402

MIB = 2**20


def cohort_config(tier: str, **overrides) -> HAMNetConfig:
    """The model `hamnet train` builds for the default cohort (genotypes subject-level, as
    its schema says)."""
    dims = CohortDims()
    return HAMNetConfig.from_tier(
        tier, clinical_dim=dims.clinical, imaging_dim=dims.imaging, genetic_dim=dims.genetic,
        lifestyle_dim=dims.lifestyle_numeric,
        lifestyle_cardinalities=tuple(len(v) for v in LIFESTYLE_CATEGORICAL.values()),
        **{"subject_level": ("genetic",), **overrides})


def compiled_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", float("nan")))


class MatmulReference:
    """FLOP/s of a float32 n x n matmul, measured at every call (in every round of the
    interleaved rows, so the machine's load moves it as it moves them); `runs` keeps them."""

    def __init__(self, n: int = 2048, reps: int = 10):
        self.n, self.reps, self.runs = n, reps, []
        self.a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        self.f = jax.jit(lambda x: x @ x)
        self.f(self.a).block_until_ready()

    def __call__(self) -> float:
        start = time.perf_counter()
        for _ in range(self.reps):
            out = self.f(self.a)
        out.block_until_ready()
        self.runs.append(2 * self.n**3 * self.reps / (time.perf_counter() - start))
        return self.runs[-1]


@contextlib.contextmanager
def patched(module: Any, name: str, value: Any):
    """Trace the model with `<module>.<name>` replaced by `value`: the A/B rows of the
    dropout-mask generators and of dropout's division."""
    kept = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, kept)


# Flax's masks: `jax.random.bernoulli`, a 32-bit word per element (the A/B of `keep_mask`)
flax_bernoulli_masks = functools.partial(
    patched, layers, "keep_mask", lambda key, keep_prob, shape: jax.random.bernoulli(key, keep_prob, shape))
# threefry keys' masks from `jax.random.bits` (two 16-bit uniforms per word, JAX's rolled CPU
# threefry loop) instead of `platform.random_bits` (four per block): the A/B of the unrolled Threefry
jax_random_bits_masks = functools.partial(patched, layers, "is_threefry_key", lambda key: False)
# dropout divides by the keep probability as a Python float, which XLA turns into a multiply
# it recomputes in every consumer: the A/B of `models.layers.opaque_scalar`
constant_dropout_divisor = functools.partial(patched, layers, "opaque_scalar", lambda value, dtype: value)


# the projections' matmuls as the plain product, whose weight gradient JAX's own transpose
# rule writes as (dy^T x)^T: the A/B of platform/matmul.py
jax_transposed_weight_gradients = without_gradient_rule


def jax_timer(name: str, cfg: HAMNetConfig, batch_size: int, precision: str = "fp32", accumulation: int = 1,
              visits: int = 4, trace: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
              key_impl: str = "threefry", packed: bool = True,
              compiler_options: dict | None = None) -> tuple[dict, Callable[[int], float]]:
    """(the compiled step's facts, run(steps) -> samples/s): compiled once, timed per call.
    `packed`: the per-visit work runs on the batch's real visits (visit packing, as `fit`
    trains), else on every visit slot. `compiler_options`: the step's XLA options (None: as
    `fit` compiles it, `training.steps.step_compiler_options`; {}: XLA's defaults)."""
    policy = resolve_policy(precision)
    cfg = cfg.replace(dtype=policy.compute_dtype)
    batch = jax.tree_util.tree_map(jnp.asarray, random_batch(cfg, batch_size, visits))
    rows = packing_rows([int(batch.visit_mask.sum())], batch_size * visits) if packed else 0
    state = create_train_state(HAMNet(cfg, packed_visits=rows), batch, jax.random.key(0), OptimizerConfig(), policy)
    # the dropout keys' implementation (training.dropout_rng; "threefry" is jax.random's default)
    key = jax.random.key(1, impl=None if key_impl == "threefry" else key_impl)
    t0 = time.perf_counter()

    def step(state, batch, key):  # a new function per timer: jit's trace cache never serves another's trace
        return train_step_fn(state, batch, key, "gaussian_nll", 1.0, accumulation)

    if compiler_options is None:
        compiler_options = step_compiler_options(jax.devices())
    with trace():
        compiled = jax.jit(step, donate_argnums=(0,), compiler_options=compiler_options).lower(
            state, batch, key).compile()
    compile_s = time.perf_counter() - t0
    memory = compiled.memory_analysis()
    holder = [state]

    def run(steps: int) -> float:
        st, m = compiled(holder[0], batch, key)  # warm-up
        jax.block_until_ready(m)
        start = time.perf_counter()
        for i in range(steps):
            st, m = compiled(st, batch, jax.random.fold_in(key, i))
        jax.block_until_ready(m)
        holder[0] = st
        return batch_size * steps / (time.perf_counter() - start)

    info = {"name": name, "framework": "jax", "device": jax.default_backend(), "tier": cfg.tier,
            "params": count_params(state.params), "batch": batch_size, "visits": visits,
            "peak_mib": compiled_memory_bytes(compiled) / MIB, "temp_mib": memory.temp_size_in_bytes / MIB,
            "flops_per_step": compiled_flops(compiled), "compile_s": compile_s}
    return info, run


def torch_timer(cfg: HAMNetConfig, batch_size: int, compile_model: bool,
                pack: bool = True) -> tuple[dict, Callable[[int], float]] | None:
    try:
        import torch

        from experiments.baselines.hamnet_torch import HAMNetTorch, batch_to_torch, make_train_step
    except ImportError:
        return None
    torch.manual_seed(0)
    model = HAMNetTorch(cfg, pack=pack)
    step = make_train_step(model)
    if compile_model:
        step = torch.compile(step)
    batch = batch_to_torch(random_batch(cfg, batch_size, 4))
    t0 = time.perf_counter()
    step(batch)  # compiles under torch.compile
    compile_s = time.perf_counter() - t0

    def run(steps: int) -> float:
        step(batch)  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            step(batch)
        return batch_size * steps / (time.perf_counter() - start)

    name = "torch " + ("compile" if compile_model else "eager") + ("" if pack else ", every visit slot")
    info = {"name": name, "framework": f"torch {torch.__version__}",
            "tier": cfg.tier, "params": sum(p.numel() for p in model.parameters()), "batch": batch_size, "visits": 4,
            "peak_mib": None, "temp_mib": None, "compile_s": compile_s, "threads": torch.get_num_threads(),
            "device": "cpu"}
    return info, run


def interleaved(timers: list[tuple[dict, Callable[[int], float]]], steps: int, reps: int,
                reference: Callable[[], float] | None = None) -> list[dict]:
    """Each timer's samples/s over `reps` rounds, every round running every timer once in
    turn (so a change in the machine's load hits all of them alike): median and spread.
    `reference` (the matmul) runs at the start of every round."""
    runs: list[list[float]] = [[] for _ in timers]
    for _ in range(reps):
        if reference is not None:
            reference()
        for i, (_, run) in enumerate(timers):
            runs[i].append(run(steps))
    rows = []
    for (info, _), rates in zip(timers, runs, strict=True):
        median = statistics.median(rates)
        row = {**info, "samples_per_s": median, "samples_per_s_runs": rates, "samples_per_s_min": min(rates),
               "samples_per_s_max": max(rates), "step_ms": info["batch"] / median * 1e3}
        if info.get("flops_per_step") is not None:
            row["achieved_flops_per_s"] = info["flops_per_step"] * median / info["batch"]
        rows.append(row)
    return rows


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
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions of the standard-tier rows")
    p.add_argument("--tiers", nargs="+", default=list(TIERS))
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--only", nargs="+", metavar="ROW", help="the standard-tier rows to run (fp32 always runs)")
    p.add_argument("--out", default="experiments/results/bench_train.json")
    p.add_argument("--malloc", choices=CHOICES, default="auto",
                   help="the allocator this process re-executes with, as `hamnet` does (HAMNET_MALLOC, "
                        "hamnet_jax/platform/host_memory.py); it applies to the JAX and the PyTorch rows alike")
    args = p.parse_args()

    reference = MatmulReference()
    tiers = interleaved([jax_timer(f"{t} fp32", cohort_config(t), args.batch) for t in args.tiers if t != "standard"],
                        args.steps, 1, reference)
    std = cohort_config("standard")
    rows: list[tuple[str, Callable[[str], tuple[dict, Callable[[int], float]]]]] = [
        ("fp32", lambda n: jax_timer(n, std, args.batch)),
        ("fp32, every visit slot (no packing)", lambda n: jax_timer(n, std, args.batch, packed=False)),
        ("fp32, multi-threaded Eigen", lambda n: jax_timer(n, std, args.batch, compiler_options={})),
        ("fp32, Flax bernoulli dropout masks", lambda n: jax_timer(n, std, args.batch, trace=flax_bernoulli_masks)),
        ("fp32, jax.random.bits dropout masks", lambda n: jax_timer(n, std, args.batch, trace=jax_random_bits_masks)),
        ("fp32, dropout divides by a constant",
         lambda n: jax_timer(n, std, args.batch, trace=constant_dropout_divisor)),
        ("fp32, weight gradients as JAX transposes them",
         lambda n: jax_timer(n, std, args.batch, trace=jax_transposed_weight_gradients)),
        ("fp32, rbg dropout keys", lambda n: jax_timer(n, std, args.batch, key_impl="rbg")),
        ("fp32, unsafe_rbg dropout keys", lambda n: jax_timer(n, std, args.batch, key_impl="unsafe_rbg")),
        ("fp32, genotypes encoded per visit", lambda n: jax_timer(n, std.replace(subject_level=()), args.batch)),
        ("bf16", lambda n: jax_timer(n, std, args.batch, precision="bf16")),
        ("fp16 + loss scaling", lambda n: jax_timer(n, std, args.batch, precision="fp16")),
        ("fp32 remat full", lambda n: jax_timer(n, std.replace(remat_policy="full"), args.batch)),
        ("fp32 accumulation x4", lambda n: jax_timer(n, std, args.batch, accumulation=4)),
        ("fp32 dot_product attention", lambda n: jax_timer(n, std.replace(attention="dot_product"), args.batch)),
        ("fp32 blockwise attention", lambda n: jax_timer(n, std.replace(attention="blockwise"), args.batch)),
    ]
    unknown = sorted(set(args.only or ()) - {name for name, _ in rows})
    if unknown:
        raise SystemExit(f"--only: no row named {unknown[0]!r}; rows: {[name for name, _ in rows]}")
    timers = [make(name) for name, make in rows if name == "fp32" or not args.only or name in args.only]
    if not args.no_torch:
        torch_rows = [torch_timer(std, args.batch, False), torch_timer(std, args.batch, True)]
        if not args.only or "fp32, every visit slot (no packing)" in args.only:
            torch_rows.append(torch_timer(std, args.batch, False, pack=False))
        timers += [t for t in torch_rows if t]
    variants = interleaved(timers, args.steps, args.reps, reference)
    peak = statistics.median(reference.runs)
    if "standard" in args.tiers:
        tiers.insert(list(args.tiers).index("standard"), {**variants[0], "name": "standard fp32"})
    memory = [] if args.only else long_history_memory(32, 64) + long_history_memory(4, 512)

    device = jax.devices()[0]
    print(f"device: {device.platform} ({device.device_kind}), {jax.device_count()} device(s); "
          f"matmul reference {peak / 1e9:.1f} GFLOP/s (float32 2048x2048; median of one run per round, "
          f"{min(reference.runs) / 1e9:.1f}-{max(reference.runs) / 1e9:.1f})")
    print(f"\n{'tier':<22}{'params':>10}{'samples/s':>12}{'step ms':>10}{'GFLOP/s':>10}{'of matmul':>11}")
    for r in tiers:
        r["fraction_of_matmul"] = r["achieved_flops_per_s"] / peak
        print(f"{r['name']:<22}{r['params']:>10,}{r['samples_per_s']:>12.0f}{r['step_ms']:>10.1f}"
              f"{r['achieved_flops_per_s'] / 1e9:>10.1f}{r['fraction_of_matmul']:>11.1%}")
    eager = next((r for r in variants if r["name"] == "torch eager"), None)
    print(f"\nstandard tier, batch {args.batch}, 4 visits"
          + ("" if device.platform == "cpu" else " (torch rows: the CPU build, on the host CPU)"))
    print(f"median of {args.reps} interleaved repetitions of {args.steps} steps (min-max)")
    print(f"{'configuration':<36}{'samples/s':>11}{'min-max':>13}{'step ms':>10}{'peak MiB':>10}"
          f"{'vs torch eager':>16}")
    for r in variants:
        r["vs_torch_eager"] = r["samples_per_s"] / eager["samples_per_s"] if eager else None
        if eager:  # the ratio's spread: every round's ratio (the two sides ran back to back)
            ratios = [a / b for a, b in zip(r["samples_per_s_runs"], eager["samples_per_s_runs"], strict=True)]
            r["vs_torch_eager_min"], r["vs_torch_eager_max"] = min(ratios), max(ratios)
        if r.get("achieved_flops_per_s"):
            r["fraction_of_matmul"] = r["achieved_flops_per_s"] / peak
        peak_mib = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "n/a"
        ratio = f"{r['vs_torch_eager']:.2f}x" if eager else "-"
        spread = f"{r['samples_per_s_min']:.0f}-{r['samples_per_s_max']:.0f}"
        print(f"{r['name']:<36}{r['samples_per_s']:>11.0f}{spread:>13}{r['step_ms']:>10.1f}{peak_mib:>10}{ratio:>16}")
    print("\ncompiled step temporary memory, standard tier, long visit histories")
    print(f"{'configuration':<26}{'visits':>7}{'batch':>7}{'temp MiB':>10}{'cut vs naive':>14}")
    for r in memory:
        print(f"{r['name']:<26}{r['visits']:>7}{r['batch']:>7}{r['temp_mib']:>10.1f}{r['cut_vs_naive']:>13.2f}x")
    result = {"device": str(device), "platform": device.platform, "host": platform.node(), "jax": jax.__version__,
              "malloc": malloc_in_use(),
              "matmul_flops_per_s": peak, "matmul_flops_per_s_runs": reference.runs, "tiers": tiers,
              "variants": variants, "long_history_memory": memory}
    write_json_atomic(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
