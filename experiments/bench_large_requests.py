"""Large requests at once: `--requests` concurrent calls of about `--mib` MiB each against
`hamnet serve`, while a probe process checks health every 50 ms; the server's peak resident
memory against its request-memory bound.

    python -m experiments.bench_large_requests --run RUN [--requests 20] [--mib 60]
                                                [--max-message-mb 16,64] [--request-memory-mb 256]
                                                [--callers-nice 19]
                                                [--out experiments/results/bench_large_requests.json]

RUN is served as `hamnet serve --repository` would (its deterministic raw-input ONNX export,
onnxruntime backend, batch 32) in its own process, once per `--max-message-mb`, with `--max-request-memory-mb`. The
health checks come from a process of their own, as a Kubernetes probe does (in the
callers' process they would time the callers' own serialization); the callers send one
request serialized once. Every large call must be answered OK or RESOURCE_EXHAUSTED; the
health checks' latencies (max, p99) and the server's VmRSS (sampled every 50 ms: before,
peak, after; the peak's rise over before against the bound) are written. Issue 39's
targets: health under 100 ms, RSS under the configured bound.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from hamnet_jax.bench.memory import host_rss_bytes
from hamnet_jax.client.client import infer_request
from hamnet_jax.client.service_process import serve_process, stop_process
from hamnet_jax.io_atomic import write_json_atomic
from hamnet_jax.serving.request_memory import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_REQUEST_MEMORY_BYTES

from experiments.bench_soak import build_repository

RESULTS = Path(__file__).parent / "results" / "bench_large_requests.json"
MAX_MESSAGE = 1 << 30
INFER = "/inference.GRPCInferenceService/ModelInfer"
# the probe: a health check every 50 ms until stdin closes; [seconds since its start, latency ms] of
# each, as JSON
PROBE = """
import json, sys, threading, time
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(sys.argv[1]))
stub.Check(health_pb2.HealthCheckRequest(), timeout=30)
print("ready", flush=True)
done, ms, t0 = threading.Event(), [], time.perf_counter()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
while not done.is_set():
    start = time.perf_counter()
    stub.Check(health_pb2.HealthCheckRequest(), timeout=30)
    ms.append((start - t0, (time.perf_counter() - start) * 1e3))
    done.wait(0.05)
print(json.dumps(ms), flush=True)
"""


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


def callers(url: str, body: bytes, count: int, nice: int) -> list[str]:
    """`count` concurrent calls of `body`, from threads at niceness `nice`; their answers."""
    answers: list[str] = []

    def call(_: int) -> str:
        channel = grpc.insecure_channel(url, options=[("grpc.max_send_message_length", MAX_MESSAGE),
                                                      ("grpc.max_receive_message_length", MAX_MESSAGE)])
        try:
            channel.unary_unary(INFER)(body, timeout=600)  # (bytes in, bytes out: serialized once)
            return "OK"
        except grpc.RpcError as err:
            return f"{err.code().name}: {err.details()[:120]}"
        finally:
            channel.close()

    def run() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, nice)  # (this thread's; the pool's threads inherit it)
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            answers.extend(pool.map(call, range(count)))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return answers


def measure(run: Path, requests: int, mib: float, max_message_mb: int, request_memory_mb: int,
            callers_nice: int) -> dict:
    """One server with these limits, `requests` calls of `mib` MiB at once; the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repository"
        build_repository(run, root, "onnxruntime")
        (root / "hamnet" / "inference.yaml").write_text(
            "inference:\n  backend: onnxruntime\n  mc_samples: 0\n  batch_size: 32\n  intra_op_threads: 1\n"
            "  max_subjects_per_request: 100000\n")
        process, url = serve_process(root, Path(tmp) / "serve.log",
                                     extra=["--no-access-log", "--max-request-memory-mb", str(request_memory_mb),
                                            "--max-message-mb", str(max_message_mb)])
        probe = None
        try:
            request, subjects = large_request(url, mib)
            body = request.SerializeToString()
            del request
            rss, done = [], threading.Event()
            before = host_rss_bytes(process.pid)
            probe = subprocess.Popen([sys.executable, "-c", PROBE, url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
            assert probe.stdout.readline().strip() == "ready"

            def watch() -> None:
                while not done.is_set():
                    rss.append(host_rss_bytes(process.pid))
                    done.wait(0.05)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            started = time.perf_counter()
            answers = callers(url, body, requests, callers_nice)
            seconds = time.perf_counter() - started
            done.set()
            watcher.join()
            probe.stdin.close()
            checks = json.loads(probe.stdout.readline())
            probe.wait(30)
            after = host_rss_bytes(process.pid)
        finally:
            if probe is not None and probe.poll() is None:
                probe.kill()
            stop_process(process)
    health_ms = [ms for _, ms in checks]
    codes: dict[str, int] = {}
    for a in answers:
        codes[a.split(":")[0]] = codes.get(a.split(":")[0], 0) + 1
    return {"max_message_mb": max_message_mb, "request_memory_mb": request_memory_mb, "callers_nice": callers_nice,
            "requests": requests, "request_bytes": len(body), "subjects_per_request": subjects,
            "seconds": seconds, "answers": codes, "answer_details": sorted(set(answers)),
            "health_checks": len(health_ms), "health_max_ms": max(health_ms),
            "health_p99_ms": float(np.percentile(health_ms, 99)),
            "health_over_100ms": sum(ms > 100 for ms in health_ms),
            "health_slowest": sorted(checks, key=lambda c: c[1])[-5:],  # [seconds into the run, ms]
            "rss_before_bytes": before, "rss_peak_bytes": max(rss), "rss_after_bytes": after,
            "rss_rise_bytes": max(rss) - before,
            "rss_rise_within_bound": max(rss) - before <= request_memory_mb << 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--mib", type=float, default=60.0)
    parser.add_argument("--callers-nice", type=int, default=19,
                        help="niceness of the callers' threads (default 19: the CPU goes to the server and the probe "
                             "first, as if the callers ran on other machines; 0: as they come)")
    parser.add_argument("--max-message-mb", default=f"{DEFAULT_MAX_MESSAGE_BYTES >> 20},64",
                        help="hamnet serve --max-message-mb, one server per value (default: the default, and 64)")
    parser.add_argument("--request-memory-mb", type=int, default=DEFAULT_REQUEST_MEMORY_BYTES >> 20,
                        help="hamnet serve --max-request-memory-mb")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    scenarios = {}
    for limit in (int(v) for v in args.max_message_mb.split(",")):
        r = measure(Path(args.run), args.requests, args.mib, limit, args.request_memory_mb, args.callers_nice)
        scenarios[f"max_message_{limit}mb"] = r
        print(f"--max-message-mb {limit}: {args.requests} requests of {r['request_bytes'] / 2**20:.1f} MiB "
              f"({r['subjects_per_request']:,} subjects) in {r['seconds']:.1f} s: {r['answers']}; health max "
              f"{r['health_max_ms']:.1f} ms (p99 {r['health_p99_ms']:.1f}, {r['health_checks']} checks); RSS "
              f"{r['rss_before_bytes'] / 2**20:.0f} MiB before, peak {r['rss_peak_bytes'] / 2**20:.0f} (rise "
              f"{r['rss_rise_bytes'] / 2**20:.0f}, bound {args.request_memory_mb}), after "
              f"{r['rss_after_bytes'] / 2**20:.0f}", flush=True)
    write_json_atomic(Path(args.out), {"run": args.run, "scenarios": scenarios})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
