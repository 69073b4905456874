"""The server-wide bound on request memory (issue 39): the budget itself, and a server whose
inference calls wait for it with their bodies unread, are answered once it frees, never
hold more than it, and refuse a message over the limit before reading it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import urllib.request

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("tritonclient.grpc")

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from hamnet_jax.client.client import infer_request  # noqa: E402
from hamnet_jax.inference.raw_inputs import random_raw  # noqa: E402
from hamnet_jax.serving.infer_intake import INFER_METHOD  # noqa: E402
from hamnet_jax.serving.repository import Repository  # noqa: E402
from hamnet_jax.serving.request_memory import COPIES_PER_BYTE, RequestMemory  # noqa: E402
from hamnet_jax.serving.server import start_server  # noqa: E402

MESSAGE_LIMIT = 4 << 20


# -- the budget ------------------------------------------------------------------------------
def test_grants_wait_in_arrival_order_and_a_cancelled_waiter_gives_its_place_back():
    async def scenario():
        memory = RequestMemory(100)
        first = await memory.acquire(60)
        waiting = [asyncio.ensure_future(memory.acquire(size)) for size in (50, 10, 30)]
        await asyncio.sleep(0)
        assert memory.waiting == 3 and memory.held == 60
        assert not any(w.done() for w in waiting)  # (10 would fit, but waits behind 50: first come first served)
        waiting[2].cancel()
        await asyncio.sleep(0)
        assert memory.waiting == 2
        memory.resize(first, 40)  # the body was smaller than its grant: 50 and 10 fit now
        await asyncio.sleep(0)
        assert waiting[0].done() and waiting[1].done() and memory.held == 100
        memory.release(first)
        memory.release(first)  # (a second release does nothing)
        for w in waiting[:2]:
            memory.release(w.result())
        assert memory.held == 0 and memory.peak == 100 and memory.waits == 3

    asyncio.run(scenario())


def test_a_grant_larger_than_the_bound_runs_alone():
    async def scenario():
        memory = RequestMemory(100)
        small = await memory.acquire(10)
        huge = asyncio.ensure_future(memory.acquire(500))
        await asyncio.sleep(0)
        assert not huge.done()
        memory.release(small)
        await asyncio.sleep(0)
        assert huge.done() and memory.held == 500
        later = asyncio.ensure_future(memory.acquire(1))
        await asyncio.sleep(0)
        assert not later.done()
        memory.release(huge.result())
        await asyncio.sleep(0)
        assert later.done()

    asyncio.run(scenario())


def test_a_waiter_cancelled_as_it_is_granted_releases_the_grant():
    async def scenario():
        memory = RequestMemory(100)
        first = await memory.acquire(100)
        waiter = asyncio.ensure_future(memory.acquire(100))
        await asyncio.sleep(0)
        memory.release(first)  # granted to the waiter, which has not run yet ...
        waiter.cancel()  # ... and is cancelled before it does
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert memory.held == 0 and memory.waiting == 0

    asyncio.run(scenario())


def test_the_bound_must_be_positive():
    with pytest.raises(ValueError, match="at least 1 byte"):
        RequestMemory(0)


# -- a server under the bound ----------------------------------------------------------------
@pytest.fixture(scope="module")
def bounded(onnx_model, tmp_path_factory):
    """A server taking 4 MiB messages whose request memory admits one such call at a time."""
    root = tmp_path_factory.mktemp("bounded")
    onnx_model(root / "m", "inference:\n  backend: onnxruntime\n  mc_samples: 0\n  batch_size: 64\n"
                           "  max_subjects_per_request: 100000\n")
    repo = Repository(root)
    repo.load_all(strict=True)
    running = start_server(repo, port=0, workers=4, access_log=False, max_message_bytes=MESSAGE_LIMIT,
                           request_memory_bytes=COPIES_PER_BYTE * MESSAGE_LIMIT, metrics_port=0)
    yield running
    running.stop(1)


def _body(running, megabytes: float, seed: int = 0) -> tuple[bytes, int]:
    """A serialized ModelInfer request of about `megabytes` MiB (raw tensors), its subjects."""
    model = running.servicer.repository.get("m")
    one = len(infer_request("m", random_raw(model.raw.spec, model.raw.preprocessor, 1, seed=seed))
              .SerializeToString())
    subjects = max(1, int(megabytes * 2**20 / one))
    arrays = random_raw(model.raw.spec, model.raw.preprocessor, subjects, seed=seed)
    return infer_request("m", arrays).SerializeToString(), subjects


def _released(memory: RequestMemory) -> bool:
    """Whether every grant is back (a call's grant is released when its task ends, which
    may be just after its client has the answer): waits for it, at most 30 s."""
    deadline = time.monotonic() + 30
    while memory.held and time.monotonic() < deadline:
        time.sleep(0.01)
    return memory.held == 0


def _call(url: str, body: bytes) -> str:
    channel = grpc.insecure_channel(url, options=[("grpc.max_send_message_length", 64 << 20)])
    try:
        channel.unary_unary(INFER_METHOD)(body, timeout=120)
        return "OK"
    except grpc.RpcError as err:
        return f"{err.code().name}: {err.details()}"
    finally:
        channel.close()


def test_calls_wait_for_request_memory_unread_and_are_answered_once_it_frees(bounded):
    """The bound held by one call: six more wait before their bodies are read (the server
    answers health meanwhile and has run none of them); released, all six are answered
    from a view of their bodies, and the server never held more than its bound."""
    memory, url = bounded.plane.memory, f"127.0.0.1:{bounded.port}"
    body, subjects = _body(bounded, 1.5)  # (over 1 MiB: read as views, not copies)
    held = asyncio.run_coroutine_threadsafe(memory.acquire(memory.capacity), bounded.loop).result()
    before = bounded.servicer.repository.get("m").stats.success_count
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = [pool.submit(_call, url, body) for _ in range(6)]
        while memory.waiting < 6:  # (each call reaches the budget when its headers arrive)
            assert not any(a.done() for a in answers), [a.result() for a in answers if a.done()]
            concurrent.futures.wait(answers, timeout=0.05)
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(url))
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=30).status == \
            health_pb2.HealthCheckResponse.SERVING
        assert bounded.servicer.repository.get("m").stats.success_count == before  # none has run
        bounded.loop.call_soon_threadsafe(memory.release, held)
        assert [a.result() for a in answers] == ["OK"] * 6
    assert bounded.servicer.repository.get("m").stats.success_count == before + 6
    assert memory.peak <= memory.capacity and _released(memory) and memory.waits >= 6
    text = urllib.request.urlopen(f"http://127.0.0.1:{bounded.metrics.port}/metrics", timeout=10).read().decode()
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("hamnet_request_memory")}
    assert values["hamnet_request_memory_capacity_bytes"] == memory.capacity
    assert values["hamnet_request_memory_bytes"] == 0 and values["hamnet_request_memory_waits_total"] >= 6


def test_a_message_over_the_limit_is_refused_before_it_is_read(bounded):
    body, _ = _body(bounded, 5)
    assert len(body) > MESSAGE_LIMIT
    answer = _call(f"127.0.0.1:{bounded.port}", body)
    assert answer.startswith("RESOURCE_EXHAUSTED") and str(MESSAGE_LIMIT) in answer
    assert _released(bounded.plane.memory)


def test_a_large_body_that_is_not_a_request_is_invalid_and_says_where_it_breaks(bounded):
    cut = bytes([0x3A]) + bytes([0x80, 0x80, 0x80, 0x05]) + b"\0" * (2 << 20)  # field 7, 10 MiB announced, 2 sent
    answer = _call(f"127.0.0.1:{bounded.port}", cut)
    assert answer.startswith("INVALID_ARGUMENT") and "raw_input_contents[0]" in answer
    assert _released(bounded.plane.memory)


def test_a_large_request_is_answered_like_a_small_one(bounded):
    """The view-reading path (bodies over 1 MiB) and protobuf's own agree on the answer."""
    body, subjects = _body(bounded, 1.5, seed=3)
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc

    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{bounded.port}"))
    request = pb.ModelInferRequest.FromString(body)
    large = stub.ModelInfer(request, timeout=120)
    first = np.frombuffer(large.raw_output_contents[0], np.float32)
    assert first.shape == (subjects,)
    half = pb.ModelInferRequest(model_name="m")  # the first 8 subjects alone: a small body
    for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True):
        shape = list(tensor.shape)
        row = len(raw) // shape[0]
        half.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=[8] + shape[1:])
        half.raw_input_contents.append(raw[:8 * row])
    small = stub.ModelInfer(half, timeout=120)
    np.testing.assert_allclose(np.frombuffer(small.raw_output_contents[0], np.float32), first[:8], rtol=1e-4, atol=1e-5)
