"""Limits a client cannot pass, each named in its error: subjects per request, bytes queued
per model, calls in flight; and large requests checked off the event loop, so health checks
stay quick while they are validated (a small-scale version of issue 39's 20 x 60 MiB)."""

from __future__ import annotations

import concurrent.futures
import time

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("tritonclient.grpc")

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from tritonclient.grpc import service_pb2_grpc  # noqa: E402

from hamnet_jax.client.client import infer_request  # noqa: E402
from hamnet_jax.inference.raw_inputs import random_raw  # noqa: E402
from hamnet_jax.serving.batcher import DynamicBatcher, QueueFull  # noqa: E402
from hamnet_jax.serving.repository import Repository  # noqa: E402
from hamnet_jax.serving.server import start_server  # noqa: E402


@pytest.fixture(scope="module")
def limited(onnx_model, tmp_path_factory):
    """A server of one ONNX model taking at most 64 subjects a request, 2 calls in flight."""
    root = tmp_path_factory.mktemp("limited")
    onnx_model(root / "m", "inference:\n  backend: onnxruntime\n  mc_samples: 0\n  batch_size: 64\n"
                           "  max_subjects_per_request: 64\n")
    repo = Repository(root)
    repo.load_all(strict=True)
    running = start_server(repo, port=0, workers=4, access_log=False, max_concurrent_calls=2)
    yield running
    running.stop(1)


def _request(running, subjects, seed=0):
    model = running.servicer.repository.get("m")
    return random_raw(model.raw.spec, model.raw.preprocessor, subjects, seed=seed)


def test_a_request_over_the_subject_limit_is_invalid_and_names_it(limited):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{limited.port}"))
    assert len(stub.ModelInfer(infer_request("m", _request(limited, 64))).outputs)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(infer_request("m", _request(limited, 65)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "65 subjects" in err.value.details() and "inference.max_subjects_per_request" in err.value.details()


def test_the_queue_is_bounded_in_bytes(limited):
    model = limited.servicer.repository.get("m")
    checked = model.predictor.validate(_request(limited, 8))
    size = sum(a.nbytes for a in checked.values())
    batcher = DynamicBatcher(model.predictor, max_batch=8, max_queue_delay_us=0, max_queued_bytes=int(1.5 * size))
    with batcher._cv:  # the worker is held: requests wait
        batcher._enqueue(checked, concurrent.futures.Future())
        with pytest.raises(QueueFull, match="inference.max_queued_bytes"):
            batcher._enqueue(checked, concurrent.futures.Future())
    batcher.close()


def test_calls_beyond_the_concurrency_limit_are_refused_and_health_stays_quick(limited):
    """With the limit's calls in flight, the next is RESOURCE_EXHAUSTED naming the limit.
    Twelve concurrent calls of 64 subjects on a server taking 2 at once: each is answered
    OK or RESOURCE_EXHAUSTED, and health checks made meanwhile are answered (their latency
    is printed, not judged: speed decides no test)."""
    url = f"127.0.0.1:{limited.port}"
    payload = infer_request("m", _request(limited, 64, seed=1))
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(url))
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url))
    limited.plane.in_flight = 2  # two calls in flight (as far as the server counts)
    try:
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(payload)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-concurrent-calls" in err.value.details()
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        limited.plane.in_flight = 0

    def call(_):
        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url))
        try:
            stub.ModelInfer(payload, timeout=120)
            return "OK"
        except grpc.RpcError as err:
            return err.code().name

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = pool.map(call, range(12))
        latencies = []
        for _ in range(5):
            start = time.perf_counter()
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=30).status == \
                health_pb2.HealthCheckResponse.SERVING
            latencies.append(time.perf_counter() - start)
        codes = list(answers)
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"} and "OK" in codes
    print(f"health check latency while loaded: max {max(latencies) * 1e3:.1f} ms; answers {sorted(codes)}")
    assert np.isfinite(latencies).all()


class RecordingPredictor:
    """A stand-in predictor: the subject count of every execution, in order."""

    max_batch = 4

    def __init__(self):
        self.executions = []

    def bucket(self, rows):
        return rows

    def run_validated(self, arrays):
        x = arrays["x"]
        self.executions.append(tuple(int(v) for v in x[:, 0]))
        return {"prediction": x[:, 0].astype(np.float32)}


def test_a_request_larger_than_the_batch_lets_others_in_between_its_parts():
    """A 12-subject request on a batch of 4 runs as three parts; a small request arriving
    while the first part waits runs before the second part, not after the whole request."""
    import asyncio

    predictor = RecordingPredictor()
    batcher = DynamicBatcher(predictor, max_batch=4, max_queue_delay_us=0)
    big = {"x": np.arange(12, dtype=np.float32)[:, None]}
    small = {"x": np.full((1, 1), 100, np.float32)}

    async def both():
        with batcher._cv:  # the worker is held until both are queued (the big one's first part, then the small)
            first = asyncio.ensure_future(batcher.run_async(big))
            await asyncio.sleep(0)  # (lets the big request queue its first part)
            second = asyncio.ensure_future(batcher.run_async(small))
            await asyncio.sleep(0)
        return await first, await second

    out_big, out_small = asyncio.run(both())
    batcher.close()
    np.testing.assert_array_equal(out_big["prediction"], np.arange(12))
    np.testing.assert_array_equal(out_small["prediction"], [100])
    assert predictor.executions == [(0, 1, 2, 3), (100,), (4, 5, 6, 7), (8, 9, 10, 11)]
