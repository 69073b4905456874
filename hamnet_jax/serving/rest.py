"""The V2 REST protocol (KServe V2 / Open Inference Protocol over HTTP, with Triton's
extensions) beside gRPC, on the same data plane (data_plane.py).

Starlette routes on uvicorn, chosen because they are what the Python model servers users
already run are built on (KServe's own server and MLServer use FastAPI, itself Starlette,
on uvicorn), they run on the gRPC server's asyncio loop (one loop, one in-flight count,
one batcher per model for both protocols), and they stay thin: no request models, the
handlers parse the few fields the protocol has. Stock `tritonclient.http` and `curl` work
unchanged; errors are KServe's JSON body `{"error": "..."}`.

    GET  /v2/health/live | /v2/health/ready           (open: probes send no token)
    GET  /v2                                          server metadata
    GET  /v2/models/{m}[/versions/{v}]                model metadata
    GET  /v2/models/{m}[/versions/{v}]/ready | /config | /stats
    POST /v2/models/{m}[/versions/{v}]/infer          JSON or binary tensors
    GET  /v2/models/stats                             every model's statistics
    POST /v2/repository/index | /v2/repository/models/{m}/load | /unload
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hamnet_jax.serving.auth import DENIED, OPEN_PATHS, BearerToken
from hamnet_jax.serving.data_plane import EXTENSIONS, SERVER_NAME, DataPlane, Failure, InferRequest, failure_of
from hamnet_jax.serving.model_descriptions import model_config, model_metadata, model_statistics
from hamnet_jax.serving.protobuf_json import message_json
from hamnet_jax.serving.repository import VALIDATE_ON_LOOP_BYTES
from hamnet_jax.serving.request_memory import COPIES_PER_BYTE, DEFAULT_MAX_MESSAGE_BYTES
from hamnet_jax.serving.request_log import REQUEST_ID_KEY, request_id
from hamnet_jax.serving.rest_tensors import (HEADER_LENGTH, decode_json_inputs, encode_response, input_headers,
                                             split_body, wants_binary)
from hamnet_jax.serving.tensors import TensorError

log = logging.getLogger("hamnet_jax.serving")
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}  # request Content-Encoding -> zlib's wbits


class BodyTooLarge(Exception):
    """A request body over the server's message limit."""


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """KServe's error body."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def rest_app(plane: DataPlane, token: str | None = None, max_body_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Any:
    """The ASGI app: every route a translation to `plane`, behind the bearer token when set."""
    routes = _Routes(plane, max_body_bytes)
    model = "/v2/models/{model}"
    paths: list[tuple[str, Callable, str]] = [
        ("/v2/health/live", routes.live, "GET"), ("/v2/health/ready", routes.ready, "GET"),
        ("/v2", routes.server_metadata, "GET"), ("/v2/models/stats", routes.statistics, "GET"),
        ("/v2/repository/index", routes.index, "POST"),
        ("/v2/repository/models/{model}/load", routes.load, "POST"),
        ("/v2/repository/models/{model}/unload", routes.unload, "POST")]
    for base in (model, model + "/versions/{version}"):
        paths += [(base, routes.model_metadata, "GET"), (base + "/ready", routes.model_ready, "GET"),
                  (base + "/config", routes.config, "GET"), (base + "/stats", routes.statistics, "GET"),
                  (base + "/infer", routes.infer, "POST")]
    app = Starlette(routes=[Route(path, _guarded(fn), methods=[method]) for path, fn, method in paths],
                    exception_handlers={HTTPException: _http_error})
    return _TokenGate(app, BearerToken(token)) if token else app


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 / 405 with KServe's error body."""
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")


def _guarded(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Map errors to HTTP statuses; a handler never lets an exception through."""

    async def handler(request: Request) -> Response:
        try:
            return await fn(request)
        except Exception as err:
            return error_response(err, request.url.path)

    return handler


def error_response(err: Exception, where: str, rid: str = "") -> JSONResponse:
    """The answer to a handler's exception (data_plane.failure_of; a body over the limit is
    413); anything unexpected is a 500, logged. `rid`: the request id, echoed in a header."""
    if isinstance(err, BodyTooLarge):
        failure, message, status = Failure.INVALID_ARGUMENT, str(err), 413
    else:
        failure, message = failure_of(err)
        status = failure.http_status
    if failure is Failure.INTERNAL:
        log.exception("unexpected error in REST %s", where, extra={"request_id": rid}, exc_info=err)
    return error(status, message, {REQUEST_ID_KEY: rid} if rid else None)


class _Routes:
    def __init__(self, plane: DataPlane, max_body_bytes: int) -> None:
        self.plane, self.max_body_bytes = plane, max_body_bytes

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self.plane.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 400)

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": SERVER_NAME, "version": self.plane.version, "extensions": EXTENSIONS})

    async def model_metadata(self, request: Request) -> Response:
        model = self.plane.model(*_name_version(request))
        return JSONResponse(message_json(model_metadata(model, self.plane.versions(model.name))))

    async def model_ready(self, request: Request) -> Response:
        name, version = _name_version(request)
        ready = self.plane.model_ready(name, version)
        return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 400)

    async def config(self, request: Request) -> Response:
        return JSONResponse(message_json(model_config(self.plane.model(*_name_version(request)))))

    async def statistics(self, request: Request) -> Response:
        name, version = _name_version(request)
        return JSONResponse(message_json(model_statistics(self.plane.statistics_of(name, version))))

    async def index(self, request: Request) -> Response:
        body = await self._json(request)
        return JSONResponse(self.plane.index(bool(body.get("ready", False))))

    async def load(self, request: Request) -> Response:
        await self.plane.load(request.path_params["model"])
        return JSONResponse({})

    async def unload(self, request: Request) -> Response:
        await self.plane.unload(request.path_params["model"])
        return JSONResponse({})

    async def infer(self, request: Request) -> Response:
        """An inference call holds request memory (request_memory.py) from before its body is
        read until it is answered: `COPIES_PER_BYTE` times its declared length (or the limit)
        while it is read, then times the body as read."""
        memory, declared = self.plane.memory, request.headers.get("content-length", "")
        grant = await memory.acquire(COPIES_PER_BYTE * (min(int(declared), self.max_body_bytes)
                                                        if declared.isdigit() else self.max_body_bytes))
        try:
            body = await self._body(request)
            memory.resize(grant, COPIES_PER_BYTE * len(body))
            return await self._infer(request, body)
        finally:
            memory.release(grant)

    async def _infer(self, request: Request, body: bytes) -> Response:
        name, version = _name_version(request)
        if len(body) > VALIDATE_ON_LOOP_BYTES:  # parsing a large JSON body would stall the loop
            parsed, binary = await asyncio.get_running_loop().run_in_executor(
                None, split_body, body, request.headers.get(HEADER_LENGTH))
        else:
            parsed, binary = split_body(body, request.headers.get(HEADER_LENGTH))
        rid, started = request_id(_Id(parsed.get("id"))), time.perf_counter()
        try:
            headers = input_headers(parsed)
            binary_outputs = wants_binary(parsed)
            outputs = [o["name"] for o in parsed.get("outputs") or []]
        except TensorError as err:  # malformed before the data plane sees it: counted and logged all the same
            self.plane.requests.finished(rid, name, version, Failure.INVALID_ARGUMENT.grpc_name,
                                         time.perf_counter() - started, 0, str(err), "http")
            return error_response(err, request.url.path, rid)
        try:
            answer = await self.plane.infer(InferRequest(
                name, version, rid, headers, lambda: decode_json_inputs(parsed, binary),
                dict(parsed.get("parameters") or {}), outputs, protocol="http"))
        except Exception as err:
            return error_response(err, request.url.path, rid)
        head = {"model_name": answer.model_name, "model_version": answer.model_version, "id": rid}
        content, json_length = encode_response(head, answer.outputs, binary_outputs)
        response_headers = {REQUEST_ID_KEY: rid}
        if json_length is not None:
            response_headers[HEADER_LENGTH] = str(json_length)
        media = "application/octet-stream" if json_length is not None else "application/json"
        return Response(content, media_type=media, headers=response_headers)

    async def _body(self, request: Request) -> bytes:
        """The request's body, decompressed (gzip / deflate), refused past the message limit
        before it is all read."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BodyTooLarge(f"the request body is {int(declared):,} bytes; the server takes at most "
                               f"{self.max_body_bytes:,} (hamnet serve --max-message-mb)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge(f"the request body is over the server's {self.max_body_bytes:,}-byte limit "
                                   "(hamnet serve --max-message-mb)")
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").lower()
        if encoding == "identity" or not body:
            return body
        if encoding not in _WBITS:
            raise TensorError(f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
        inflater = zlib.decompressobj(_WBITS[encoding])
        try:
            plain = inflater.decompress(body, self.max_body_bytes + 1)
        except zlib.error as err:
            raise TensorError(f"the {encoding} request body does not decompress: {err}") from None
        if len(plain) > self.max_body_bytes or inflater.unconsumed_tail:
            raise BodyTooLarge(f"the decompressed request body is over the server's {self.max_body_bytes:,}-byte "
                               "limit (hamnet serve --max-message-mb)")
        return plain

    async def _json(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object ({} when empty)."""
        text = await self._body(request)
        if not text.strip():
            return {}
        try:
            body = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise TensorError(f"the request body is not JSON: {err}") from None
        if not isinstance(body, dict):
            raise TensorError("the request body must be a JSON object")
        return body


class _Id:
    """What `request_id` reads: the request's own id, when it is a non-empty string."""

    def __init__(self, value: Any) -> None:
        self.id = value if isinstance(value, str) else ""


def _name_version(request: Request) -> tuple[str, str]:
    return request.path_params.get("model", ""), request.path_params.get("version", "")


class _TokenGate:
    """ASGI middleware: `authorization: Bearer <token>` on every path but health, else 401."""

    def __init__(self, app: Any, token: BearerToken) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PATHS):
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        if self.token.accepts(given):
            return await self.app(scope, receive, send)
        response = error(401, DENIED.replace("metadata", "header"), {"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
