"""Closed-loop load generator: N clients, each sending one request after the other.

`sweep` runs each concurrency level for `duration` seconds (after a warm-up second) and
reports throughput (requests/s), latency p50 / p95 / p99 and errors: the original
documentation's "Deployment Scalability" table, measured. The clients are coroutines of
one `grpc.aio` event loop, each on its own channel (its own HTTP/2 connection, as
separate client processes would have); requests are serialized once beforehand and sent
as bytes, so the generator spends its CPU on the calls (it shares the machine with the
server it measures: Python threads with blocking stubs cost ~3x as much CPU per call).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np

from hamnet_jax.client.client import PLAINTEXT, Credentials, infer_request

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


async def _level(url: str, payloads: Sequence[bytes], concurrency: int, duration: float, warmup: float,
                 credentials: Credentials) -> dict[str, Any]:
    channels = [credentials.channel(url, aio=True) for _ in range(concurrency)]
    metadata = credentials.metadata()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    state = {"record": False, "stop": False}

    async def client(k: int, call: Any) -> None:
        i = k
        while not state["stop"]:
            payload = payloads[i % len(payloads)]
            i += concurrency
            start = time.perf_counter()
            try:
                await call(payload, timeout=60, metadata=metadata or None)
            except grpc.aio.AioRpcError as err:
                if state["record"]:
                    errors[err.code().name] = errors.get(err.code().name, 0) + 1
                continue
            if state["record"]:
                latencies.append(time.perf_counter() - start)

    try:
        tasks = [asyncio.create_task(client(k, ch.unary_unary(MODEL_INFER))) for k, ch in enumerate(channels)]
        await asyncio.sleep(warmup)
        state["record"], started = True, time.perf_counter()
        await asyncio.sleep(duration)
        state["record"], elapsed = False, time.perf_counter() - started
        state["stop"] = True
        await asyncio.gather(*tasks)
    finally:
        for ch in channels:
            await ch.close()
    ms = np.asarray(latencies) * 1e3
    pct = (lambda q: float(np.percentile(ms, q))) if ms.size else (lambda q: None)
    failed = sum(errors.values())
    return {"concurrency": concurrency, "requests": int(ms.size), "seconds": elapsed,
            "throughput": ms.size / elapsed, "mean_ms": float(ms.mean()) if ms.size else None,
            "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99), "errors": failed,
            "error_rate": failed / max(failed + ms.size, 1), "error_codes": errors}


def run_level(url: str, payloads: Sequence[bytes], concurrency: int, duration: float, warmup: float = 1.0,
              credentials: Credentials = PLAINTEXT) -> dict[str, Any]:
    """One concurrency level over serialized ModelInfer requests (`serialized`)."""
    return asyncio.run(_level(url, payloads, concurrency, duration, warmup, credentials))


async def _statuses(url: str, payloads: Sequence[bytes], concurrency: int, timeout: float) -> list[str]:
    channel = grpc.aio.insecure_channel(url, options=[("grpc.max_send_message_length", 1 << 30)])
    call = channel.unary_unary(MODEL_INFER)
    codes: list[str] = [""] * len(payloads)
    cursor = iter(range(len(payloads)))

    async def worker() -> None:
        for i in cursor:
            try:
                await call(payloads[i], timeout=timeout)
                codes[i] = "OK"
            except grpc.aio.AioRpcError as err:
                codes[i] = err.code().name

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await channel.close()
    return codes


def statuses(url: str, payloads: Sequence[bytes], concurrency: int = 8, timeout: float = 30.0) -> list[str]:
    """The status code name each serialized ModelInfer request is answered with."""
    return asyncio.run(_statuses(url, payloads, concurrency, timeout))


def serialized(model: str, requests: Sequence[dict[str, np.ndarray]]) -> list[bytes]:
    return [infer_request(model, r).SerializeToString() for r in requests]


def requests_from_metadata(url: str, model: str, count: int = 64, subjects: int = 1,
                           seed: int = 0, credentials: Credentials = PLAINTEXT) -> list[dict[str, np.ndarray]]:
    """Valid requests for any served model, from its metadata: standard-normal values
    (10% NaN, the first value of each subject kept), visit times 0."""
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    channel = credentials.channel(url)
    meta = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(
        service_pb2.ModelMetadataRequest(name=model), timeout=30, metadata=credentials.metadata() or None)
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
          duration: float = 10.0, credentials: Credentials = PLAINTEXT) -> list[dict[str, Any]]:
    payloads = serialized(model, requests)
    return [run_level(url, payloads, c, duration, credentials=credentials) for c in levels]


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| concurrent clients | throughput (infer/s) | p50 ms | p95 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['concurrency']} | {r['throughput']:,.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['errors']} |")
    return "\n".join(lines)
