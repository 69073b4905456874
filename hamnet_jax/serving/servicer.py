"""`inference.GRPCInferenceService` (KServe V2 / Open Inference Protocol, with the Triton
extensions stock Triton tools call), over a `Repository`.

The protocol's messages and service come from tritonclient's generated modules, so the
package, service, message names and field numbers are Triton's own: stock
`tritonclient.grpc` clients, perf_analyzer and KServe V2 clients work unchanged. Every
bad request is answered with a status code (INVALID_ARGUMENT naming the input and row,
NOT_FOUND for an unknown model); a handler never lets an exception through.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2, service_pb2_grpc

from hamnet_jax.errors import InputError
from hamnet_jax.serving.batcher import BatcherClosed, QueueFull
from hamnet_jax.serving.metrics import ServingMetrics
from hamnet_jax.serving.repository import Repository, ServedModel
from hamnet_jax.serving.request_log import REQUEST_ID_KEY, RequestLog, request_id
from hamnet_jax.serving.tensors import TensorError, decode_inputs, encode_outputs

log = logging.getLogger("hamnet_jax.serving")
SERVER_NAME = "hamnet-jax"
EXTENSIONS = ["model_repository", "model_configuration", "statistics", "schedule_policy"]

SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


class ModelControlOff(Exception):
    """A load or unload asked of a server started without model control."""


def _status_of(err: Exception) -> tuple[grpc.StatusCode, str]:
    """The gRPC status (and message) a handler's exception is answered with. A client never
    reads the server's filesystem in a message: paths are cut to their last part, and an
    unexpected error says only its type (the server's log has the rest)."""
    if isinstance(err, (TensorError, InputError)):
        return grpc.StatusCode.INVALID_ARGUMENT, without_paths(str(err))
    if isinstance(err, KeyError):
        return grpc.StatusCode.NOT_FOUND, without_paths(str(err.args[0])) if err.args else "not found"
    if isinstance(err, QueueFull):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)
    if isinstance(err, ModelControlOff):
        return grpc.StatusCode.FAILED_PRECONDITION, str(err)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(err).__name__}); the server's log has the details"


_PATH = re.compile(r"(?<![\w.:/])(?:~|\.{1,2})?/(?:[^\s/'\"(),:]+/)+([^\s/'\"(),:]*)")


def without_paths(message: str) -> str:
    """`message` with every filesystem path cut to its last part (`/srv/models/a/1` -> `.../1`)."""
    return _PATH.sub(lambda m: f".../{m.group(1)}", message)


def _guarded(fn: Callable) -> Callable:
    """Map errors to status codes; anything unexpected is INTERNAL, logged, never a crash.
    ModelInfer calls get a request id (the response's `id`; the `hamnet-request-id`
    trailer of an error) and are counted, timed and logged (serving/request_log.py)."""
    infer = fn.__name__ == "ModelInfer"

    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        started, code, message = time.perf_counter(), grpc.StatusCode.OK, ""
        version = getattr(request, "model_version", "")
        rid = request_id(request) if infer else ""
        try:
            response = await (fn(self, request, rid) if infer else fn(self, request))
            version = getattr(response, "model_version", version)
            return response
        except asyncio.CancelledError:  # the client went away: counted as such, nothing to answer
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as err:
            code, message = _status_of(err)
            if code is grpc.StatusCode.INTERNAL:  # a server bug: answer, log, keep serving
                log.exception("unexpected error in %s", fn.__name__, extra={"request_id": rid})
        finally:
            if infer:
                self.requests.finished(rid, request, version, code, time.perf_counter() - started, message)
        if infer:
            context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
        await context.abort(code, message)

    handler.__name__ = fn.__name__
    return handler


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, repository: Repository, version: str = "0.1.0", metrics: ServingMetrics | None = None,
                 access_log: bool = True, model_control: bool = False, max_concurrent_calls: int = 1024) -> None:
        self.repository, self.version, self.metrics = repository, version, metrics
        self.model_control = model_control
        self.max_concurrent_calls, self.in_flight = max_concurrent_calls, 0  # ModelInfer calls (event loop only)
        self.requests = RequestLog(metrics, access_log)
        self.shutting_down = False
        self.health: Any = None  # grpc_health.v1's servicer, set by the server (`follow_models`)

    async def follow_models(self) -> None:
        """grpc.health.v1 as the models stand: the server ("" and the V2 service) SERVING
        while any model is ready, NOT_SERVING while none is (a Kubernetes readiness probe
        then takes the pod out); each model by its name, SERVING while a version is loaded."""
        if self.health is None or self.shutting_down:
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
        return pb.ServerReadyResponse(ready=not self.shutting_down and bool(self.repository.loaded()))

    @_guarded
    async def ModelReady(self, request: Any) -> Any:
        try:
            self.repository.get(request.name, request.version)
        except KeyError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=not self.shutting_down)

    @_guarded
    async def ServerMetadata(self, request: Any) -> Any:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self.version, extensions=EXTENSIONS)

    @_guarded
    async def ModelMetadata(self, request: Any) -> Any:
        model = self.repository.get(request.name, request.version)
        versions = sorted((m.version for m in self.repository.loaded() if m.name == model.name), key=int)
        response = pb.ModelMetadataResponse(name=model.name, versions=versions, platform=model.platform)
        for name, shape in model.raw.spec.shapes(-1).items():
            response.inputs.add(name=name, datatype="FP32", shape=list(shape))
        for name in model.predictor.output_names:
            response.outputs.add(name=name, datatype="FP32", shape=[-1])
        return response

    @_guarded
    async def ModelConfig(self, request: Any) -> Any:
        model = self.repository.get(request.name, request.version)
        return pb.ModelConfigResponse(config=model_config(model))

    # -- inference -----------------------------------------------------------------------
    @_guarded
    async def ModelInfer(self, request: Any, rid: str) -> Any:
        if self.in_flight >= self.max_concurrent_calls:  # (health and metadata calls never count)
            raise QueueFull(f"{self.in_flight} inference calls are in flight, the server's limit "
                            "(hamnet serve --max-concurrent-calls); retry later")
        self.in_flight += 1
        try:
            return await self._infer(request, rid)
        finally:
            self.in_flight -= 1

    async def _infer(self, request: Any, rid: str) -> Any:
        parameters = {k: _parameter(v) for k, v in request.parameters.items()}
        model = self.repository.route(request.model_name, request.model_version, parameters)
        for tensor in request.inputs:
            if tensor.datatype != "FP32":
                raise InputError(f"input {tensor.name!r}: datatype {tensor.datatype}, expected FP32 "
                                 "(NaN = missing; category values as floats)")
        subjects = max((int(t.shape[0]) for t in request.inputs if len(t.shape)), default=0)
        if subjects > model.options.max_subjects_per_request:
            raise InputError(f"the request holds {subjects:,} subjects; this model takes at most "
                             f"{model.options.max_subjects_per_request:,} per request "
                             "(inference.max_subjects_per_request): split it")
        arrays = decode_inputs(request)
        wanted = [o.name for o in request.outputs]
        unknown = sorted(set(wanted) - set(model.predictor.output_names))
        if unknown:
            raise InputError(f"requested output(s) {unknown} do not exist; the model has "
                             f"{list(model.predictor.output_names)}")
        try:
            outputs = await model.predict_async(arrays)
        except BatcherClosed:  # a reload swapped the version out after routing: its successor answers
            model = self.repository.route(request.model_name, request.model_version, parameters)
            outputs = await model.predict_async(arrays)
        response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=rid)
        encode_outputs(response, outputs, raw=bool(request.raw_input_contents), wanted=wanted or None)
        return response

    # -- statistics and repository ---------------------------------------------------------
    @_guarded
    async def ModelStatistics(self, request: Any) -> Any:
        models = [m for m in self.repository.loaded()
                  if (not request.name or m.name == request.name) and (not request.version or
                                                                        m.version == request.version)]
        if request.name and not models:
            raise KeyError(f"model {request.name!r} is not loaded")
        response = pb.ModelStatisticsResponse()
        for m in sorted(models, key=lambda m: (m.name, int(m.version))):
            with m.lock:
                s = m.stats
                stats = response.model_stats.add(name=m.name, version=m.version, last_inference=s.last_inference_ms,
                                                 inference_count=s.inference_count,
                                                 execution_count=s.execution_count)
                stats.inference_stats.success.count, stats.inference_stats.success.ns = s.success_count, s.success_ns
                stats.inference_stats.fail.count, stats.inference_stats.fail.ns = s.fail_count, s.fail_ns
                # queue and compute as Triton reports them (perf_analyzer needs them: without a version it
                # takes the version whose queue count rose, and it checks the three compute counts are one
                # count, the executions): with the batcher, its own waits and timings; without it a request
                # goes straight to an executor thread (no queue of ours) and one call does all three parts
                b, i = m.batcher, stats.inference_stats
                if b is not None:
                    i.queue.count, i.queue.ns = b.dequeued, b.queue_ns
                    parts = (b.batches, b.input_ns), (b.batches, b.compute_ns), (b.batches, b.output_ns)
                else:
                    i.queue.count, i.queue.ns = s.success_count, 0
                    parts = (s.execution_count, 0), (s.execution_count, s.success_ns), (s.execution_count, 0)
                for part, (count, ns) in zip((i.compute_input, i.compute_infer, i.compute_output), parts, strict=True):
                    part.count, part.ns = count, ns
        return response

    @_guarded
    async def RepositoryIndex(self, request: Any) -> Any:
        response = pb.RepositoryIndexResponse()
        loaded = {(m.name, m.version) for m in self.repository.loaded()}
        for name, versions in self.repository.available().items():
            for version in sorted(versions, key=int):
                ready = (name, version) in loaded
                if request.ready and not ready:
                    continue
                reason = "" if ready else without_paths(self.repository.failures.get(name, "unloaded"))
                response.models.add(name=name, version=version, state="READY" if ready else "UNAVAILABLE",
                                    reason=reason)
        return response

    @_guarded
    async def RepositoryModelLoad(self, request: Any) -> Any:
        self._check_model_control()
        await asyncio.get_running_loop().run_in_executor(None, self.repository.load, request.model_name)
        await self.follow_models()
        return pb.RepositoryModelLoadResponse()

    @_guarded
    async def RepositoryModelUnload(self, request: Any) -> Any:
        self._check_model_control()
        # (off the event loop: draining the model's batcher waits for its queued requests)
        await asyncio.get_running_loop().run_in_executor(None, self.repository.unload, request.model_name)
        await self.follow_models()
        return pb.RepositoryModelUnloadResponse()

    def _check_model_control(self) -> None:
        if not self.model_control:
            raise ModelControlOff("model control is off: this server loads its repository at start only (start "
                                  "hamnet serve with --model-control explicit to load and unload over the API)")


def _parameter(value: Any) -> Any:
    """An InferParameter's value (whichever of its fields is set)."""
    field = value.WhichOneof("parameter_choice")
    return getattr(value, field) if field else None


def model_config(model: ServedModel) -> Any:
    """Triton's ModelConfig of a served model: batched (dims exclude the batch), FP32 raw
    inputs, one value per subject for each output (dims [1] reshaped to a scalar)."""
    config = mc.ModelConfig(name=model.name, platform=model.platform,
                            max_batch_size=int(model.options.batch_size))
    for name, shape in model.raw.spec.shapes(-1).items():
        config.input.add(name=name, data_type=mc.TYPE_FP32, dims=list(shape[1:]))
    for name in model.predictor.output_names:
        out = config.output.add(name=name, data_type=mc.TYPE_FP32, dims=[1])
        out.reshape.shape.extend([])
    config.version_policy.all.SetInParent()
    if model.batcher is not None:
        config.dynamic_batching.preferred_batch_size.extend(model.batcher.preferred)
        config.dynamic_batching.max_queue_delay_microseconds = int(model.options.max_queue_delay_us)
    return config
