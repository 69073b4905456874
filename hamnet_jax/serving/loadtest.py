"""Closed-loop load generator: N clients, each sending one request after the other.

`sweep` runs each concurrency level for `duration` seconds (after a warm-up second) and
reports throughput (requests/s), latency p50 / p95 / p99 and errors: the original
documentation's "Deployment Scalability" table, measured. Requests are prebuilt
(serialization is not measured on the client's clock twice).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2_grpc

from hamnet_jax.serving.client import infer_request


def _client_loop(stub: Any, messages: list, stop: threading.Event, record: bool, out: list, errors: list) -> None:
    i = 0
    while not stop.is_set():
        message = messages[i % len(messages)]
        i += 1
        start = time.perf_counter()
        try:
            stub.ModelInfer(message, timeout=60)
        except grpc.RpcError as err:
            errors.append(err.code().name)
            continue
        if record:
            out.append(time.perf_counter() - start)


def run_level(url: str, messages: list, concurrency: int, duration: float, warmup: float = 1.0) -> dict[str, Any]:
    """One concurrency level: every client has its own channel (as separate processes would)."""
    channels = [grpc.insecure_channel(url) for _ in range(concurrency)]
    stubs = [service_pb2_grpc.GRPCInferenceServiceStub(c) for c in channels]
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    for record, seconds in ((False, warmup), (True, duration)):
        stop = threading.Event()
        threads = [threading.Thread(target=_client_loop, args=(stubs[k], messages[k::concurrency] or messages, stop,
                                                               record, latencies[k], errors))
                   for k in range(concurrency)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    for c in channels:
        c.close()
    all_ms = np.asarray([x for lat in latencies for x in lat]) * 1e3
    return {"concurrency": concurrency, "requests": int(all_ms.size), "throughput": all_ms.size / elapsed,
            "p50_ms": float(np.percentile(all_ms, 50)) if all_ms.size else None,
            "p95_ms": float(np.percentile(all_ms, 95)) if all_ms.size else None,
            "p99_ms": float(np.percentile(all_ms, 99)) if all_ms.size else None, "errors": len(errors)}


def requests_from_metadata(url: str, model: str, count: int = 64, subjects: int = 1,
                           seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Valid requests for any served model, from its metadata: standard-normal values
    (10% NaN, the first value of each subject kept), visit times 0."""
    from tritonclient.grpc import service_pb2

    channel = grpc.insecure_channel(url)
    meta = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(
        service_pb2.ModelMetadataRequest(name=model), timeout=30)
    channel.close()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        request = {}
        for tensor in meta.inputs:
            shape = (subjects,) + tuple(int(d) for d in tensor.shape[1:])
            if tensor.name == "visit_times":
                request[tensor.name] = np.zeros(shape, np.float32)
                continue
            x = rng.standard_normal(shape).astype(np.float32)
            x[rng.random(shape) < 0.1] = np.nan
            x.reshape(subjects, -1)[:, 0] = 1.0
            request[tensor.name] = x
        out.append(request)
    return out


def sweep(url: str, model: str, requests: Sequence[dict[str, np.ndarray]], levels: Sequence[int] = (1, 8, 32, 64),
          duration: float = 10.0) -> list[dict[str, Any]]:
    messages = [infer_request(model, r) for r in requests]
    return [run_level(url, messages, c, duration) for c in levels]


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| concurrent clients | throughput (infer/s) | p50 ms | p95 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['concurrency']} | {r['throughput']:,.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['errors']} |")
    return "\n".join(lines)
