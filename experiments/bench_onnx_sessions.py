"""How many fixed-batch ONNX Runtime sessions a served model should keep: speed and memory.

    python experiments/bench_onnx_sessions.py --run RUN [--levels 1 8 32 64] [--rounds 3] [--duration 8]
                                              [--out experiments/results/bench_onnx_sessions.json]

With dynamic batching, `hamnet serve` runs a call of a size in
`inference.fixed_batch_sessions` on a session of its own with the batch fixed (ONNX Runtime
then folds the graph's shape arithmetic) and every other size unpadded on one session of
symbolic batch. Each fixed session costs memory, and every reload builds them all again
while the old version still serves. Three settings of the same deterministic raw-input
export of RUN (batch 32, one intra-op thread, no queue delay):

* `symbolic`: none fixed, one session (the default);
* `ends`: 1 and 32 fixed, three sessions;
* `fine`: every size to 8, then four per doubling to 32 (the setting before), 17 sessions.

Throughput: all three served by one `hamnet serve`, each level driven by the project's load
generator, alternating between the settings for `--rounds` rounds (this machine's speed
drifts within minutes); the median round of each. Memory: each setting served alone by a
fresh `hamnet serve`: resident memory once loaded, and after 10 reloads of the model with
no load (the soak, experiments/bench_soak.py, measures reloads under load).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402

from hamnet_jax.bench.memory import host_rss_bytes  # noqa: E402
from hamnet_jax.client.loadtest import requests_from_metadata, run_level, serialized  # noqa: E402
from hamnet_jax.client.service_process import serve_process, stop_process  # noqa: E402
from hamnet_jax.export.onnx_export import export_run_onnx  # noqa: E402
from hamnet_jax.inference.raw_model import RawModel  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.repository.layout import add_to_repository  # noqa: E402
from hamnet_jax.runs.run_dir import load_run  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "bench_onnx_sessions.json"
BATCH = 32
SETTINGS = {"symbolic": [], "ends": [1, BATCH],
            "fine": [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, BATCH]}
RELOADS = 10


def options(fixed: list[int]) -> dict:
    return {"backend": "onnxruntime", "mc_samples": 0, "batch_size": BATCH, "dynamic_batching": True,
            "max_queue_delay_us": 0, "intra_op_threads": 1, "inter_op_threads": 1, "fixed_batch_sessions": fixed}


def repository(run: Path, graph: Path, root: Path, names: list[str]) -> Path:
    for name in names:
        add_to_repository(root, name, run, graph, options(SETTINGS[name]))
    return root


def throughput(url: str, levels: list[int], rounds: int, duration: float) -> list[dict]:
    """Every setting at every level, alternating `rounds` times; the median round of each."""
    requests = requests_from_metadata(url, next(iter(SETTINGS)), count=64)  # one graph: the same inputs
    payloads = {name: serialized(name, requests) for name in SETTINGS}
    out = []
    for level in levels:
        runs: dict[str, list[dict]] = {name: [] for name in SETTINGS}
        for _ in range(rounds):
            for name in SETTINGS:
                runs[name].append(run_level(url, payloads[name], level, duration))
        for name, rows in runs.items():
            median = sorted(rows, key=lambda r: r["throughput"])[rounds // 2]
            out.append({"setting": name, "concurrency": level, "throughputs": [r["throughput"] for r in rows],
                        "throughput": median["throughput"], "p50_ms": median["p50_ms"], "p95_ms": median["p95_ms"],
                        "errors": sum(r["errors"] for r in rows)})
        print(f"x{level}: " + ", ".join(f"{r['setting']} {r['throughput']:,.0f}/s" for r in out[-len(SETTINGS):]),
              flush=True)
    return out


def memory(run: Path, graph: Path, tmp: Path, name: str) -> dict:
    """One setting alone: resident memory once loaded, and after `RELOADS` reloads."""
    root = repository(run, graph, tmp / f"memory-{name}", [name])
    process, url = serve_process(root, tmp / f"memory-{name}.log", extra=["--model-control", "explicit"])
    try:
        loaded = host_rss_bytes(process.pid)
        with grpc.insecure_channel(url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            for _ in range(RELOADS):
                stub.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name=name), timeout=120)
        reloaded = host_rss_bytes(process.pid)
    finally:
        stop_process(process)
    return {"setting": name, "sessions": len(SETTINGS[name]) + 1, "rss_loaded_mib": loaded / 2**20,
            "rss_after_reloads_mib": reloaded / 2**20, "reloads": RELOADS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        graph = tmp / "model.onnx"
        export_run_onnx(RawModel.from_run(load_run(args.run), 0), graph)
        memories = [memory(args.run, graph, tmp, name) for name in SETTINGS]
        for m in memories:
            print(f"{m['setting']} ({m['sessions']} sessions): {m['rss_loaded_mib']:.0f} MiB loaded, "
                  f"{m['rss_after_reloads_mib']:.0f} after {RELOADS} reloads", flush=True)
        process, url = serve_process(repository(args.run, graph, tmp / "all", list(SETTINGS)), tmp / "all.log")
        try:
            speed = throughput(url, args.levels, args.rounds, args.duration)
        finally:
            stop_process(process)
    ends = {r["concurrency"]: r["throughput"] for r in speed if r["setting"] == "ends"}
    for r in speed:
        r["throughput_over_ends"] = r["throughput"] / ends[r["concurrency"]]
    write_json_atomic(args.out, {"run": str(args.run), "batch_size": BATCH, "settings": SETTINGS,
                                 "rounds": args.rounds, "duration_s": args.duration, "memory": memories,
                                 "throughput": speed, "median_spread": float(np.median(
                                     [max(r["throughputs"]) / min(r["throughputs"]) for r in speed]))})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
