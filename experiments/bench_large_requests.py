"""Large requests at once: `--requests` concurrent calls of about `--mib` MiB each against
`hamnet serve`, while a health check runs every 50 ms; the server's peak resident memory.

    python -m experiments.bench_large_requests --run RUN [--requests 20] [--mib 60]
                                                [--out experiments/results/bench_large_requests.json]

RUN is served as `hamnet serve --repository` would (its deterministic raw-input ONNX export,
onnxruntime backend, batch 32) in its own process. Every large call must be answered OK or
RESOURCE_EXHAUSTED; the health checks' latencies (max, p99) and the server's VmRSS (sampled
every 50 ms: before, peak, after) are written. Issue 39's target: health under 100 ms.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from hamnet_jax.client.client import infer_request
from hamnet_jax.client.service_process import serve_process, stop_process
from hamnet_jax.io_atomic import write_json_atomic

from experiments.bench_soak import build_repository, rss_bytes

RESULTS = Path(__file__).parent / "results" / "bench_large_requests.json"
MAX_MESSAGE = 1 << 30


def large_request(url: str, mib: float) -> object:
    """(A ModelInfer request of about `mib` MiB, its subjects): values drawn like real ones
    (standard normal, 10% missing, every subject observed), visit times 0."""
    channel = grpc.insecure_channel(url)
    meta = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(
        service_pb2.ModelMetadataRequest(name="hamnet"), timeout=30)
    channel.close()
    per_subject = sum(4 * int(np.prod([int(d) for d in t.shape[1:]])) for t in meta.inputs)
    subjects = max(1, int(mib * 2**20 / per_subject))
    rng = np.random.default_rng(0)
    arrays = {}
    for t in meta.inputs:
        shape = (subjects, *(int(d) for d in t.shape[1:]))
        x = rng.normal(size=shape).astype(np.float32)
        if t.name != "visit_times":
            x[rng.random(shape) < 0.1] = np.nan
            x.reshape(subjects, -1)[:, 0] = 1.0  # every subject observed
        else:
            x[:] = 0.0
        arrays[t.name] = x
    return infer_request("hamnet", arrays), subjects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--mib", type=float, default=60.0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repository"
        build_repository(Path(args.run), root, "onnxruntime")
        (root / "hamnet" / "inference.yaml").write_text(
            "inference:\n  backend: onnxruntime\n  mc_samples: 0\n  batch_size: 32\n  intra_op_threads: 1\n"
            "  max_subjects_per_request: 100000\n")
        process, url = serve_process(root, Path(tmp) / "serve.log", extra=["--no-access-log"])
        try:
            request, subjects = large_request(url, args.mib)
            size = request.ByteSize()
            rss, health_ms, done = [], [], threading.Event()
            before = rss_bytes(process.pid)

            def watch() -> None:
                stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(url))
                while not done.is_set():
                    start = time.perf_counter()
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=30)
                    health_ms.append((time.perf_counter() - start) * 1e3)
                    rss.append(rss_bytes(process.pid))
                    done.wait(0.05)

            def call(_: int) -> str:
                channel = grpc.insecure_channel(url, options=[("grpc.max_send_message_length", MAX_MESSAGE),
                                                              ("grpc.max_receive_message_length", MAX_MESSAGE)])
                try:
                    service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=600)
                    return "OK"
                except grpc.RpcError as err:
                    return f"{err.code().name}: {err.details()[:120]}"
                finally:
                    channel.close()

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.requests) as pool:
                answers = list(pool.map(call, range(args.requests)))
            seconds = time.perf_counter() - started
            done.set()
            watcher.join()
            after = rss_bytes(process.pid)
        finally:
            stop_process(process)
    codes = {}
    for a in answers:
        codes[a.split(":")[0]] = codes.get(a.split(":")[0], 0) + 1
    result = {"run": args.run, "requests": args.requests, "request_bytes": size, "subjects_per_request": subjects,
              "seconds": seconds, "answers": codes, "answer_details": sorted(set(answers)),
              "health_checks": len(health_ms), "health_max_ms": max(health_ms),
              "health_p99_ms": float(np.percentile(health_ms, 99)), "rss_before_bytes": before,
              "rss_peak_bytes": max(rss), "rss_after_bytes": after}
    write_json_atomic(Path(args.out), result)
    print(f"{args.requests} requests of {size / 2**20:.1f} MiB ({subjects:,} subjects) in {seconds:.1f} s: {codes}; "
          f"health max {result['health_max_ms']:.1f} ms (p99 {result['health_p99_ms']:.1f}, "
          f"{len(health_ms)} checks); "
          f"RSS {before / 2**20:.0f} MiB before, peak {max(rss) / 2**20:.0f}, after {after / 2**20:.0f}; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
