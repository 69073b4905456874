"""Start and stop the gRPC inference server: the KServe V2 service, gRPC health checking
(`grpc.health.v1`, what Kubernetes gRPC probes call) and server reflection.

A thread-pool `grpc.server`: the handlers call predictors that release the GIL while XLA
or ONNX Runtime compute, so threads overlap; `stop` flips health to NOT_SERVING, refuses
new calls and lets in-flight ones finish within `grace` seconds.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tritonclient.grpc import service_pb2, service_pb2_grpc

from hamnet_jax.errors import InputError
from hamnet_jax.serving.auth import BearerTokenInterceptor
from hamnet_jax.serving.metrics import ServingMetrics
from hamnet_jax.serving.repository import Repository
from hamnet_jax.serving.servicer import InferenceServicer

log = logging.getLogger("hamnet_jax.serving")
SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass
class RunningServer:
    server: grpc.Server
    port: int
    servicer: InferenceServicer
    health: health.HealthServicer
    metrics: ServingMetrics | None = None

    def stop(self, grace: float = 10.0) -> None:
        """Graceful: NOT_SERVING first (probes take the pod out), then finish in-flight calls."""
        self.servicer.shutting_down = True
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        for model in self.servicer.repository.loaded():
            model.close()
        if self.metrics is not None:
            self.metrics.close()

    def wait(self) -> None:
        self.server.wait_for_termination()


def start_server(repository: Repository, host: str = "127.0.0.1", port: int = 8001, workers: int = 16,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, token: str | None = None,
                 tls: tuple[bytes, bytes] | None = None, metrics_port: int | None = None) -> RunningServer:
    """Serve `repository` on host:port (port 0 picks a free one; the bound port is returned).
    `token`: calls need `authorization: Bearer <token>` (health stays open); `tls`: (PEM
    certificate chain, PEM private key) for a TLS port instead of a plain one;
    `metrics_port`: Prometheus `/metrics` over HTTP on host:metrics_port (0: a free port)."""
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes)]
    interceptors = [BearerTokenInterceptor(token)] if token else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=options,
                         interceptors=interceptors)
    metrics = ServingMetrics(repository) if metrics_port is not None else None
    servicer = InferenceServicer(repository, metrics=metrics)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{host}:{port}"
    if tls is not None:
        bound = server.add_secure_port(address, grpc.ssl_server_credentials([(tls[1], tls[0])]))
    else:
        bound = server.add_insecure_port(address)
    if not bound:
        raise InputError(f"cannot listen on {host}:{port} (in use, or not an address of this machine)")
    server.start()
    if metrics is not None:
        metrics.serve(host, metrics_port)
    log.info("serving %s on %s:%d", [f"{m.name}/{m.version}" for m in repository.loaded()], host, bound)
    return RunningServer(server, bound, servicer, health_servicer, metrics)
