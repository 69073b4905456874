"""A gRPC health probe: exit 0 when the server answers SERVING, 1 otherwise.

    python -m hamnet_jax.client.probe [--host 127.0.0.1] [--port 8001] [--service NAME]

The container image's HEALTHCHECK runs it (Docker has no native gRPC probe; Kubernetes
manifests use the kubelet's own `grpc:` probes). It calls `grpc.health.v1.Health/Check`,
which the server answers without a bearer token. The port defaults to HAMNET_API_PORT.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(host: str, port: int, service: str = "", timeout: float = 3.0, tls: bool = False) -> bool:
    address = f"{host}:{port}"
    channel = grpc.secure_channel(address, grpc.ssl_channel_credentials()) if tls else grpc.insecure_channel(address)
    try:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                           timeout=timeout)
        return answer.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False
    finally:
        channel.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gRPC health probe of a hamnet server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("HAMNET_API_PORT", 8001)))
    parser.add_argument("--service", default="", help="service name ('' = the whole server)")
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--tls", action="store_true", help="the server serves TLS (system root certificates)")
    args = parser.parse_args(argv)
    serving = check(args.host, args.port, args.service, args.timeout, args.tls)
    print("SERVING" if serving else "NOT SERVING", file=sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
