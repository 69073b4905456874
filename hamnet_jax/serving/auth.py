"""Bearer-token authentication, the same for both protocols.

With a token configured, every call must carry `authorization: Bearer <token>` (gRPC
metadata, or the HTTP header) or is answered UNAUTHENTICATED (HTTP 401); health stays
open (`grpc.health.v1`, REST `/v2/health/`: Kubernetes probes send no token). The
comparison is constant-time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

OPEN_SERVICES = ("/grpc.health.v1.Health/",)
OPEN_PATHS = ("/v2/health/",)
DENIED = "missing or wrong bearer token (authorization metadata)"


class BearerToken:
    """The expected `authorization` value, compared in constant time."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the bearer token is empty")
        self._expected = f"Bearer {token}".encode()

    def accepts(self, authorization: str | bytes) -> bool:
        given = authorization.encode() if isinstance(authorization, str) else authorization
        return hmac.compare_digest(given, self._expected)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._token = BearerToken(token)

        async def deny(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, DENIED)

        # (request-streaming, so the call is refused before its body is read)
        self._deny = grpc.stream_unary_rpc_method_handler(deny)

    async def intercept_service(self, continuation: Callable, handler_call_details: Any) -> Any:
        if handler_call_details.method.startswith(OPEN_SERVICES):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        if self._token.accepts(str(metadata.get("authorization", ""))):
            return await continuation(handler_call_details)
        return self._deny
