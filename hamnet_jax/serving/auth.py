"""Bearer-token authentication for the gRPC service.

With a token configured, every call must carry `authorization: Bearer <token>` metadata
or is answered UNAUTHENTICATED; `grpc.health.v1` stays open (Kubernetes probes send no
token). The comparison is constant-time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

OPEN_SERVICES = ("/grpc.health.v1.Health/",)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the bearer token is empty")
        self._expected = f"Bearer {token}".encode()

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or wrong bearer token (authorization metadata)")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(self, continuation: Callable, handler_call_details: Any) -> Any:
        if handler_call_details.method.startswith(OPEN_SERVICES):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = str(metadata.get("authorization", "")).encode()
        if hmac.compare_digest(given, self._expected):
            return await continuation(handler_call_details)
        return self._deny
