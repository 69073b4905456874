"""Start and stop the inference server: the KServe V2 service over gRPC, with gRPC health
checking (`grpc.health.v1`, what Kubernetes gRPC probes call) and server reflection, and
optionally over REST (rest.py) on the same data plane and event loop.

A `grpc.aio` server on an event loop of its own thread. It replaced a thread-pool
`grpc.server`, which hands every call between threads: with the same model, batcher and
load generator (`hamnet loadtest`, 32 clients, standard tier, one run each) the thread
pool answered 448 infer/s and the event loop 584 (before the batcher and ONNX session
changes that took it past 700 in experiments/bench_serving.py). Handlers decode and validate on the loop; the model runs
on each model's batcher thread (or the loop's executor of `workers` threads without
batching) while ONNX Runtime / XLA release the GIL; repository loads run in the
executor, so a reload never stalls serving. `stop` flips health to NOT_SERVING, refuses
new calls and lets in-flight ones finish within `grace`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tritonclient.grpc import service_pb2_grpc

from hamnet_jax.errors import InputError
from hamnet_jax.platform.freed_memory import trim_c_heap
from hamnet_jax.serving.auth import BearerTokenInterceptor
from hamnet_jax.serving.data_plane import DataPlane
from hamnet_jax.serving.infer_intake import InferIntakeInterceptor
from hamnet_jax.serving.metrics import ServingMetrics
from hamnet_jax.serving.repository import Repository
from hamnet_jax.serving.request_memory import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_REQUEST_MEMORY_BYTES, RequestMemory
from hamnet_jax.serving.servicer import SERVICE_NAME, InferenceServicer

log = logging.getLogger("hamnet_jax.serving")
# The batcher's thread needs the GIL back the moment ONNX Runtime / XLA return, while the
# loop thread holds it decoding requests. Measured at 32 clients (standard tier): between
# two model runs the batcher spends ~0.8 ms of CPU but waited 7.5 ms of wall time with
# Python's default 5 ms switch interval, 4.1 ms at 0.5 ms, 2.4 ms at 0.1 ms.
SWITCH_INTERVAL_S = 0.0001


@dataclasses.dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    servicer: InferenceServicer
    health: Any  # grpc_health.v1.health.aio.HealthServicer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    metrics: ServingMetrics | None = None
    http: Any = None  # http_listener.HttpListener, when REST is served

    @property
    def plane(self) -> DataPlane:
        return self.servicer.plane

    @property
    def http_port(self) -> int | None:
        return None if self.http is None else self.http.port

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self, grace: float = 10.0, close_models: bool = True) -> None:
        """Graceful: NOT_SERVING first (probes take the pod out), then finish in-flight calls,
        then stop the models' batchers (`close_models=False` leaves a repository shared with
        another server running)."""
        if not self.thread.is_alive():
            return
        self.plane.shutting_down = True
        self._call(self.health.enter_graceful_shutdown())
        if self.http is not None:
            self._call(self.http.stop(grace))
        self._call(self.server.stop(grace))
        for model in self.servicer.repository.loaded() if close_models else ():
            model.close()
        if self.metrics is not None:
            self.metrics.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()

    def wait(self) -> None:
        """Block until the server stops (`stop` from another thread or a signal handler)."""
        while self.thread.is_alive():
            self.thread.join(0.5)


def start_server(repository: Repository, host: str = "127.0.0.1", port: int = 8001, workers: int = 16,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, token: str | None = None,
                 tls: tuple[bytes, bytes] | None = None, metrics_port: int | None = None,
                 access_log: bool = True, model_control: bool = False,
                 metrics_host: str | None = None, max_concurrent_calls: int = 1024,
                 http_port: int | None = None,
                 request_memory_bytes: int = DEFAULT_REQUEST_MEMORY_BYTES) -> RunningServer:
    """Serve `repository` on host:port (port 0 picks a free one; the bound port is returned).
    `token`: calls need `authorization: Bearer <token>` (health stays open); `tls`: (PEM
    certificate chain, PEM private key) for a TLS port instead of a plain one;
    `metrics_port`: Prometheus `/metrics` over HTTP on `metrics_host` (default `host`):metrics_port
    (0: a free port); `access_log`: one JSON line per ModelInfer call (serving/request_log.py);
    `model_control`: clients may load and unload models (Triton's `--model-control-mode
    explicit`; off, those calls are refused); `max_concurrent_calls`: inference calls in flight at
    once (RESOURCE_EXHAUSTED beyond it; health checks and metadata are never refused);
    `http_port`: the V2 REST protocol on host:http_port too (0: a free port), with the same
    token, TLS, limits, metrics and logs; `request_memory_bytes`: the memory inference requests
    may hold at once, being received or computed (request_memory.py; calls beyond it wait
    with their bodies unread)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    loop = asyncio.new_event_loop()
    loop.set_default_executor(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hamnet-exec"))
    started: futures.Future = futures.Future()
    thread = threading.Thread(target=_run_loop, args=(loop, started), name="hamnet-grpc", daemon=True)
    thread.start()
    started.result()
    memory = RequestMemory(request_memory_bytes,
                           after_large_release=lambda: loop.run_in_executor(None, trim_c_heap))
    metrics = ServingMetrics(repository, memory) if metrics_port is not None else None
    plane = DataPlane(repository, metrics=metrics, access_log=access_log, model_control=model_control,
                      max_concurrent_calls=max_concurrent_calls, memory=memory)
    servicer = InferenceServicer(plane)
    http = None
    try:
        if http_port is not None:
            http = _http_listener(plane, host, http_port, token, tls, max_message_bytes)
        server, bound, health_servicer = asyncio.run_coroutine_threadsafe(
            _start(servicer, f"{host}:{port}", max_message_bytes, token, tls), loop).result()
        if http is not None:
            asyncio.run_coroutine_threadsafe(http.start(), loop).result()
    except Exception:
        if http is not None:
            http.socket.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        raise
    running = RunningServer(server, bound, servicer, health_servicer, loop, thread, metrics, http)
    if metrics is not None:
        metrics.serve(metrics_host or host, metrics_port)
    log.info("serving %s on %s:%d", [f"{m.name}/{m.version}" for m in repository.loaded()], host, bound)
    return running


def _http_listener(plane: DataPlane, host: str, port: int, token: str | None, tls: tuple[bytes, bytes] | None,
                   max_message_bytes: int) -> Any:
    from hamnet_jax.serving.http_listener import HttpListener  # (starlette and uvicorn load only for REST)
    from hamnet_jax.serving.rest import rest_app

    return HttpListener(rest_app(plane, token, max_message_bytes), host, port, tls)


def _run_loop(loop: asyncio.AbstractEventLoop, started: futures.Future) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set_result, None)
    loop.run_forever()


async def _start(servicer: InferenceServicer, address: str, max_message_bytes: int, token: str | None,
                 tls: tuple[bytes, bytes] | None) -> tuple[grpc.aio.Server, int, Any]:
    # (without BDP probing a stream's HTTP/2 window stays at 64 KiB until its body is read, so
    # calls waiting for request memory leave their bodies on the client: with it, twenty
    # waiting 60 MiB calls were received anyway)
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes), ("grpc.http2.bdp_probe", 0)]
    interceptors = [BearerTokenInterceptor(token)] if token else []
    interceptors.append(InferIntakeInterceptor(servicer.plane.memory, max_message_bytes))
    server = grpc.aio.server(options=options, interceptors=interceptors)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    servicer.health = health_servicer
    await servicer.follow_models()
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        if tls is not None:
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([(tls[1], tls[0])]))
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as err:  # grpc.aio raises where grpc.server returns 0
        raise InputError(f"cannot listen on {address} (in use, or not an address of this machine)") from err
    if not bound:
        raise InputError(f"cannot listen on {address} (in use, or not an address of this machine)")
    await server.start()
    return server, bound, health_servicer
