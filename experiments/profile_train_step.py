"""Where the standard tier's training step spends its time: a `jax.profiler` trace of the
compiled step, each traced XLA operation matched to its instruction in the compiled HLO and
attributed by what it computes, which pass it belongs to and which part of the model.

    python experiments/profile_train_step.py [--batch 256] [--steps 5] [--dropout-rng threefry rbg]
                                             [--every-visit-slot]
                                             [--out experiments/results/profile_train_step.json]

For each dropout-key implementation: the step `fit` trains is compiled (standard tier, fp32,
the default cohort's widths, 4 visit slots, the per-visit work packed onto the real visits;
`--every-visit-slot`: unpacked), warmed up, and `--steps` steps are traced
(`jax.profiler.trace` with a Perfetto trace), in a process running with the allocator
`hamnet` picks (it re-executes itself as `hamnet` does: hamnet_jax/platform/host_memory.py).
XLA:CPU names each executed operation after its HLO instruction
(`dot.148`, `ynn_fusion.356`, `while.661`, ...); the instruction's opcode, its fused
computation and its `op_name` metadata (the JAX call path, e.g.
`transpose(jvp(HAMNet))/imaging_encoder/block/attn/query/dot_general`) say:

* category: `matmul` (dots, XNNPACK/YNNPACK matmul fusions), `random bits` (threefry
  `while` loops over uint32 words, `rng-bit-generator`), `layout` (copies and transposes),
  `reduction`, `elementwise` (other fusions), `other`;
* pass: forward, backward (`transpose(...)`), optimizer (everything outside the model);
* component: the model's top-level module (imaging_encoder, genetic_encoder, temporal, ...).

Times are the traced operations' own durations summed over both CPU threads, per step: their
shares say where the work is; the step's wall time is measured beside them, and the trace's
timeline says how much of it had at least one operation running, and two at once (how well
the step keeps both cores busy). Prints the
tables; writes the JSON (and leaves the traces under --trace-dir for TensorBoard / XProf).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hamnet_jax.platform.host_memory import malloc_in_use, reexec_with_fast_malloc  # noqa: E402

if __name__ == "__main__":
    reexec_with_fast_malloc()  # as `hamnet` runs (hamnet_jax/platform/host_memory.py): a new process, same arguments

from bench_train import cohort_config  # noqa: E402

from hamnet_jax.data.batch import random_batch  # noqa: E402
from hamnet_jax.data.visit_packing import packing_rows  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.models.hamnet import HAMNet  # noqa: E402
from hamnet_jax.training.precision import resolve_policy  # noqa: E402
from hamnet_jax.training.state import OptimizerConfig, create_train_state  # noqa: E402
from hamnet_jax.training.steps import step_compiler_options, train_step_fn  # noqa: E402

INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (.*?) ([\w\-]+)\((.*)$")
COMPUTATION = re.compile(r"^\s*(?:ENTRY )?%?([\w.\-]+) (?:\(.*\) -> .*)?\{\s*$")
OP_NAME = re.compile(r'op_name="([^"]*)"')
CALLS = re.compile(r"(?:calls|body|to_apply)=%?([\w.\-]+)")


def parse_hlo(text: str) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """(instruction name -> {opcode, shape, op_name, calls}, computation name -> opcodes)."""
    instructions: dict[str, dict] = {}
    computations: dict[str, list[str]] = collections.defaultdict(list)
    current = None
    for line in text.splitlines():
        head = COMPUTATION.match(line)
        if head and "=" not in line.split("{")[0]:
            current = head.group(1)
            continue
        m = INSTRUCTION.match(line)
        if not m:
            continue
        name, shape, opcode, rest = m.groups()
        op_name = OP_NAME.search(rest)
        instructions[name] = {"opcode": opcode, "shape": shape, "op_name": op_name.group(1) if op_name else "",
                              "calls": CALLS.findall(rest), "line": line}
        if current:
            computations[current].append(opcode)
    return instructions, computations


def called_opcodes(inst: dict, computations: dict[str, list[str]], instructions: dict[str, dict]) -> set[str]:
    seen, todo, opcodes = set(), list(inst["calls"]), set()
    while todo:
        c = todo.pop()
        if c in seen:
            continue
        seen.add(c)
        opcodes.update(computations.get(c, ()))
    return opcodes


def category(name: str, inst: dict, computations: dict[str, list[str]], instructions: dict[str, dict]) -> str:
    opcode, inner = inst["opcode"], called_opcodes(inst, computations, instructions)
    if opcode in ("dot", "convolution") or name.startswith(("ynn_fusion", "xnn_fusion")) or \
            (opcode == "fusion" and {"dot", "convolution"} & inner):
        return "matmul"
    if opcode == "rng-bit-generator" or "rng-bit-generator" in inner or \
            any(w in inst["op_name"] for w in ("random_bits", "threefry", "rng_bit_generator")) or \
            (opcode == "while" and "u32[" in inst["shape"]):
        return "random bits"
    if opcode in ("copy", "transpose") or (opcode == "fusion" and inner and inner <= {"copy", "transpose", "bitcast",
                                                                                      "parameter"}):
        return "layout"
    if opcode in ("reduce", "reduce-window") or (opcode == "fusion" and "reduce" in inner):
        return "reduction"
    if opcode == "fusion":
        return "elementwise"
    return "other"


def step_pass(op_name: str) -> str:
    if "HAMNet" not in op_name:
        return "optimizer and loss"
    return "backward" if "transpose(" in op_name else "forward"


def component(op_name: str) -> str:
    tail = re.split(r"HAMNet\)*/", op_name, maxsplit=1)
    return tail[1].split("/")[0] if len(tail) == 2 else "(outside the model)"


def concurrency(intervals: list[tuple[float, float]]) -> tuple[float, float]:
    """(time with at least one interval open, time with two or more open) of (start, end) pairs."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    one = two = 0.0
    open_, last = 0, None
    for t, step in edges:
        if last is not None:
            one += (t - last) if open_ >= 1 else 0.0
            two += (t - last) if open_ >= 2 else 0.0
        open_, last = open_ + step, t
    return one, two


def profile(dropout_rng: str, batch_size: int, steps: int, trace_dir: Path, packed: bool = True) -> dict:
    cfg = cohort_config("standard")
    batch = jax.tree_util.tree_map(jnp.asarray, random_batch(cfg, batch_size, 4))
    rows = packing_rows([int(batch.visit_mask.sum())], batch_size * 4) if packed else 0
    state = create_train_state(HAMNet(cfg, packed_visits=rows), batch, jax.random.key(0), OptimizerConfig(),
                               resolve_policy("fp32"))
    key = jax.random.key(1, impl=None if dropout_rng == "threefry" else dropout_rng)
    compiled = jax.jit(lambda s, b, k: train_step_fn(s, b, k, "gaussian_nll", 1.0, 1), donate_argnums=(0,),
                       compiler_options=step_compiler_options(jax.devices())).lower(state, batch, key).compile()
    instructions, computations = parse_hlo(compiled.as_text())
    for i in range(3):  # warm-up
        state, m = compiled(state, batch, jax.random.fold_in(key, i))
    jax.block_until_ready(m)
    out = trace_dir / dropout_rng
    with jax.profiler.trace(str(out), create_perfetto_trace=True):
        start = time.perf_counter()
        for i in range(steps):
            state, m = compiled(state, batch, jax.random.fold_in(key, 100 + i))
        jax.block_until_ready(m)
        wall = (time.perf_counter() - start) / steps
    trace = sorted(glob.glob(str(out / "plugins/profile/*/perfetto_trace.json.gz")))[-1]
    events = json.load(gzip.open(trace))
    events = events["traceEvents"] if isinstance(events, dict) else events
    by = {k: collections.Counter() for k in ("category", "pass", "component", "operation", "thread")}
    matched = 0
    intervals = []
    for e in events:
        inst = instructions.get(e.get("name", "")) if e.get("ph") == "X" else None
        if inst is None:
            continue
        us = e.get("dur", 0) / steps
        matched += 1
        intervals.append((e["ts"], e["ts"] + e.get("dur", 0)))
        by["thread"][e.get("tid")] += us
        by["category"][category(e["name"], inst, computations, instructions)] += us
        by["pass"][step_pass(inst["op_name"])] += us
        by["component"][component(inst["op_name"])] += us
        by["operation"][f"{e['name']} ({inst['op_name'][-70:]})"] += us
    total = sum(by["category"].values())
    table = lambda counter, k=None: [{"name": n, "ms": us / 1e3, "share": us / total}
                                     for n, us in counter.most_common(k)]
    one, two = concurrency(intervals)
    threads = sorted(by["thread"].values(), reverse=True)
    return {"dropout_rng": dropout_rng, "batch": batch_size, "packed_rows": rows, "steps": steps,
            "step_wall_ms": wall * 1e3, "op_ms_per_step": total / 1e3, "ops_matched_per_step": matched / steps,
            "busy_ms_per_step": one / steps / 1e3, "both_threads_busy_ms_per_step": two / steps / 1e3,
            "thread_op_ms_per_step": [us / 1e3 for us in threads], "malloc": malloc_in_use(),
            "category": table(by["category"]), "pass": table(by["pass"]), "component": table(by["component"]),
            "top_operations": table(by["operation"], 15), "trace": str(Path(trace).parent)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--dropout-rng", nargs="+", default=["threefry", "rbg"])
    ap.add_argument("--trace-dir", default="runs/profile_train_step")
    ap.add_argument("--every-visit-slot", action="store_true",
                    help="profile the unpacked step (the per-visit work on every visit slot)")
    ap.add_argument("--out", default="experiments/results/profile_train_step.json")
    args = ap.parse_args()
    results = [profile(r, args.batch, args.steps, Path(args.trace_dir), not args.every_visit_slot)
               for r in args.dropout_rng]
    device = jax.devices()[0]
    write_json_atomic(Path(args.out), {"device": f"{device.platform} ({device.device_kind})", "jax": jax.__version__,
                                       "profiles": results})
    for r in results:
        print(f"\ndropout keys {r['dropout_rng']} (packed rows {r['packed_rows'] or 'none'}, {r['malloc']}): step "
              f"{r['step_wall_ms']:.1f} ms wall, {r['op_ms_per_step']:.1f} ms of traced operations (both threads), "
              f"{r['ops_matched_per_step']:.0f} operations per step")
        print(f"  timeline: an operation running {r['busy_ms_per_step']:.1f} ms of the step, two at once "
              f"{r['both_threads_busy_ms_per_step']:.1f} ms; per thread: "
              + ", ".join(f"{ms:.1f} ms" for ms in r["thread_op_ms_per_step"]))
        for what in ("category", "pass", "component"):
            print(f"  by {what}: " + ", ".join(f"{x['name']} {x['ms']:.1f} ms ({x['share']:.0%})" for x in r[what]))
        print("  top operations:")
        for x in r["top_operations"][:10]:
            print(f"    {x['ms']:7.2f} ms {x['share']:5.1%}  {x['name']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
