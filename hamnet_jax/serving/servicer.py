"""`inference.GRPCInferenceService` (KServe V2 / Open Inference Protocol, with the Triton
extensions stock Triton tools call), over the protocol-neutral data plane (data_plane.py).

The protocol's messages and service come from tritonclient's generated modules, so the
package, service, message names and field numbers are Triton's own: stock
`tritonclient.grpc` clients, perf_analyzer and KServe V2 clients work unchanged. A handler
only translates protobuf to and from the data plane; every bad request is answered with a
status code (INVALID_ARGUMENT naming the input and row, NOT_FOUND for an unknown model),
and a handler never lets an exception through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2, service_pb2_grpc

from hamnet_jax.serving.data_plane import EXTENSIONS, SERVER_NAME, DataPlane, Failure, InferRequest, failure_of
from hamnet_jax.serving.model_descriptions import model_config, model_metadata, model_statistics
from hamnet_jax.serving.request_log import REQUEST_ID_KEY, request_id
from hamnet_jax.serving.tensors import decode_inputs, encode_outputs

log = logging.getLogger("hamnet_jax.serving")
SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


def _guarded(fn: Callable) -> Callable:
    """Map errors to status codes (data_plane.failure_of); anything unexpected is INTERNAL,
    logged, never a crash. ModelInfer calls get a request id (the response's `id`; the
    `hamnet-request-id` trailer of an error); the data plane counts, times and logs them."""
    infer = fn.__name__ == "ModelInfer"

    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        rid = request_id(request) if infer else ""
        try:
            return await (fn(self, request, rid) if infer else fn(self, request))
        except asyncio.CancelledError:  # the client went away: nothing to answer
            raise
        except Exception as err:
            failure, message = failure_of(err)
            if failure is Failure.INTERNAL:  # a server bug: answer, log, keep serving
                log.exception("unexpected error in %s", fn.__name__, extra={"request_id": rid})
        if infer:
            context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
        await context.abort(getattr(grpc.StatusCode, failure.grpc_name), message)

    handler.__name__ = fn.__name__
    return handler


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane) -> None:
        self.plane, self.repository = plane, plane.repository
        self.health: Any = None  # grpc_health.v1's servicer, set by the server (`follow_models`)
        plane.on_models_changed.append(self.follow_models)

    async def follow_models(self) -> None:
        """grpc.health.v1 as the models stand: the server ("" and the V2 service) SERVING
        while any model is ready, NOT_SERVING while none is (a Kubernetes readiness probe
        then takes the pod out); each model by its name, SERVING while a version is loaded."""
        if self.health is None or self.plane.shutting_down:
            return
        loaded = {m.name for m in self.repository.loaded()}
        status = lambda up: health_pb2.HealthCheckResponse.SERVING if up else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status(bool(loaded)))
        for name in self.repository.available():
            await self.health.set(name, status(name in loaded))

    # -- health and metadata ---------------------------------------------------------------
    @_guarded
    async def ServerLive(self, request: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    @_guarded
    async def ServerReady(self, request: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.plane.ready())

    @_guarded
    async def ModelReady(self, request: Any) -> Any:
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

    @_guarded
    async def ServerMetadata(self, request: Any) -> Any:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self.plane.version, extensions=EXTENSIONS)

    @_guarded
    async def ModelMetadata(self, request: Any) -> Any:
        model = self.plane.model(request.name, request.version)
        return model_metadata(model, self.plane.versions(model.name))

    @_guarded
    async def ModelConfig(self, request: Any) -> Any:
        return pb.ModelConfigResponse(config=model_config(self.plane.model(request.name, request.version)))

    # -- inference -----------------------------------------------------------------------
    @_guarded
    async def ModelInfer(self, request: Any, rid: str) -> Any:
        if isinstance(request, Exception):  # a body that did not parse (infer_intake.py)
            raise request
        parameters = {k: _parameter(v) for k, v in request.parameters.items()}
        headers = [(t.name, t.datatype, tuple(int(d) for d in t.shape)) for t in request.inputs]
        answer = await self.plane.infer(InferRequest(
            request.model_name, request.model_version, rid, headers, lambda: decode_inputs(request), parameters,
            [o.name for o in request.outputs]))
        response = pb.ModelInferResponse(model_name=answer.model_name, model_version=answer.model_version, id=rid)
        encode_outputs(response, answer.outputs, raw=bool(request.raw_input_contents))
        return response

    # -- statistics and repository ---------------------------------------------------------
    @_guarded
    async def ModelStatistics(self, request: Any) -> Any:
        return model_statistics(self.plane.statistics_of(request.name, request.version))

    @_guarded
    async def RepositoryIndex(self, request: Any) -> Any:
        response = pb.RepositoryIndexResponse()
        for row in self.plane.index(request.ready):
            response.models.add(**row)
        return response

    @_guarded
    async def RepositoryModelLoad(self, request: Any) -> Any:
        await self.plane.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @_guarded
    async def RepositoryModelUnload(self, request: Any) -> Any:
        await self.plane.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _parameter(value: Any) -> Any:
    """An InferParameter's value (whichever of its fields is set)."""
    field = value.WhichOneof("parameter_choice")
    return getattr(value, field) if field else None
