"""The protocol-neutral data plane both front ends call: the gRPC servicer (servicer.py) and
the V2 REST app (rest.py) only translate their wire format to and from it.

As MLServer's data plane does: one place decides admission (the in-flight limit), routing
(version, A/B split), the request limits, validation and prediction, and records every
inference call (request id, Prometheus count and latency, the JSON access log), so the
two protocols cannot drift apart in what they accept or how they count it. Errors are
raised as exceptions; `failure_of` maps each to one `Failure`, which carries both the gRPC
status and the HTTP status it is answered with.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hamnet_jax.errors import InputError
from hamnet_jax.serving.batcher import BatcherClosed, QueueFull
from hamnet_jax.serving.metrics import ServingMetrics
from hamnet_jax.serving.repository import Repository, ServedModel
from hamnet_jax.serving.request_log import RequestLog
from hamnet_jax.serving.request_memory import DEFAULT_REQUEST_MEMORY_BYTES, RequestMemory
from hamnet_jax.serving.tensors import TensorError

SERVER_NAME = "hamnet-jax"
EXTENSIONS = ["model_repository", "model_configuration", "statistics", "schedule_policy", "binary_tensor_data"]


class ModelControlOff(Exception):
    """A load or unload asked of a server started without model control."""


class Failure(enum.Enum):
    """How a failed call is answered: (gRPC status code name, HTTP status)."""

    OK = ("OK", 200)
    INVALID_ARGUMENT = ("INVALID_ARGUMENT", 400)
    NOT_FOUND = ("NOT_FOUND", 404)
    RESOURCE_EXHAUSTED = ("RESOURCE_EXHAUSTED", 429)
    FAILED_PRECONDITION = ("FAILED_PRECONDITION", 400)
    UNAVAILABLE = ("UNAVAILABLE", 503)
    CANCELLED = ("CANCELLED", 499)
    INTERNAL = ("INTERNAL", 500)

    @property
    def grpc_name(self) -> str:
        return self.value[0]

    @property
    def http_status(self) -> int:
        return self.value[1]


_PATH = re.compile(r"(?<![\w.:/])(?:~|\.{1,2})?/(?:[^\s/'\"(),:]+/)+([^\s/'\"(),:]*)")


def without_paths(message: str) -> str:
    """`message` with every filesystem path cut to its last part (`/srv/models/a/1` -> `.../1`)."""
    return _PATH.sub(lambda m: f".../{m.group(1)}", message)


def failure_of(err: Exception) -> tuple[Failure, str]:
    """The answer to a handler's exception. A client never reads the server's filesystem in a
    message: paths are cut to their last part, and an unexpected error says only its type
    (the server's log has the rest)."""
    if isinstance(err, (TensorError, InputError)):
        return Failure.INVALID_ARGUMENT, without_paths(str(err))
    if isinstance(err, KeyError):
        return Failure.NOT_FOUND, without_paths(str(err.args[0])) if err.args else "not found"
    if isinstance(err, QueueFull):
        return Failure.RESOURCE_EXHAUSTED, str(err)
    if isinstance(err, ModelControlOff):
        return Failure.FAILED_PRECONDITION, str(err)
    return Failure.INTERNAL, f"internal error ({type(err).__name__}); the server's log has the details"


@dataclasses.dataclass(frozen=True)
class InferRequest:
    """An inference request as either protocol received it: the tensors' headers (name,
    datatype, shape) and a `decode` that turns their contents into arrays (called only after
    the headers passed the limits, so an oversized request is never decoded)."""

    model_name: str
    model_version: str
    id: str
    headers: list[tuple[str, str, tuple[int, ...]]]
    decode: Callable[[], dict[str, np.ndarray]]
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    outputs: list[str] = dataclasses.field(default_factory=list)  # empty: every output
    protocol: str = "grpc"

    @property
    def subjects(self) -> int:
        return max((shape[0] for _, _, shape in self.headers if shape), default=0)


@dataclasses.dataclass(frozen=True)
class InferResponse:
    model_name: str
    model_version: str
    id: str
    outputs: dict[str, np.ndarray]  # in the order asked for


class DataPlane:
    """Admission, routing, limits, prediction and bookkeeping over a `Repository`."""

    def __init__(self, repository: Repository, version: str = "0.1.0", metrics: ServingMetrics | None = None,
                 access_log: bool = True, model_control: bool = False, max_concurrent_calls: int = 1024,
                 memory: RequestMemory | None = None) -> None:
        self.repository, self.version, self.metrics = repository, version, metrics
        self.memory = memory if memory is not None else RequestMemory(DEFAULT_REQUEST_MEMORY_BYTES)
        self.model_control = model_control
        self.max_concurrent_calls, self.in_flight = max_concurrent_calls, 0  # inference calls (event loop only)
        self.requests = RequestLog(metrics, access_log)
        self.shutting_down = False
        self.on_models_changed: list[Callable[[], Any]] = []  # coroutines to await after a load or unload

    # -- health and metadata ---------------------------------------------------------------
    def ready(self) -> bool:
        return not self.shutting_down and bool(self.repository.loaded())

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.repository.get(name, version)
        except KeyError:
            return False
        return not self.shutting_down

    def model(self, name: str, version: str = "") -> ServedModel:
        return self.repository.get(name, version)

    def versions(self, name: str) -> list[str]:
        return sorted((m.version for m in self.repository.loaded() if m.name == name), key=int)

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Every version on disk: name, version, state (READY / UNAVAILABLE) and why not ready."""
        loaded = {(m.name, m.version) for m in self.repository.loaded()}
        rows = []
        for name, versions in self.repository.available().items():
            for version in sorted(versions, key=int):
                ready = (name, version) in loaded
                if ready_only and not ready:
                    continue
                reason = "" if ready else without_paths(self.repository.failures.get(name, "unloaded"))
                rows.append({"name": name, "version": version, "state": "READY" if ready else "UNAVAILABLE",
                             "reason": reason})
        return rows

    def statistics_of(self, name: str = "", version: str = "") -> list[ServedModel]:
        models = [m for m in self.repository.loaded()
                  if (not name or m.name == name) and (not version or m.version == version)]
        if name and not models:
            raise KeyError(f"model {name!r} is not loaded")
        return sorted(models, key=lambda m: (m.name, int(m.version)))

    # -- model control ---------------------------------------------------------------------
    async def load(self, name: str) -> None:
        self._check_model_control()
        await asyncio.get_running_loop().run_in_executor(None, self.repository.load, name)
        await self._models_changed()

    async def unload(self, name: str) -> None:
        self._check_model_control()
        # (off the event loop: draining the model's batcher waits for its queued requests)
        await asyncio.get_running_loop().run_in_executor(None, self.repository.unload, name)
        await self._models_changed()

    async def _models_changed(self) -> None:
        for follow in self.on_models_changed:
            await follow()

    def _check_model_control(self) -> None:
        if not self.model_control:
            raise ModelControlOff("model control is off: this server loads its repository at start only (start "
                                  "hamnet serve with --model-control explicit to load and unload over the API)")

    # -- inference -------------------------------------------------------------------------
    async def infer(self, request: InferRequest) -> InferResponse:
        """Admit, check, route and predict; the call is counted, timed and logged whatever
        happens (a client that goes away is counted CANCELLED)."""
        started, failure, message = time.perf_counter(), Failure.OK, ""
        version = request.model_version
        try:
            if self.in_flight >= self.max_concurrent_calls:  # (health and metadata calls never count)
                raise QueueFull(f"{self.in_flight} inference calls are in flight, the server's limit "
                                "(hamnet serve --max-concurrent-calls); retry later")
            self.in_flight += 1
            try:
                response = await self._infer(request)
            finally:
                self.in_flight -= 1
            version = response.model_version
            return response
        except asyncio.CancelledError:
            failure = Failure.CANCELLED
            raise
        except Exception as err:
            failure, message = failure_of(err)
            raise
        finally:
            self.requests.finished(request.id, request.model_name, version, failure.grpc_name,
                                   time.perf_counter() - started, request.subjects, message, request.protocol)

    async def _infer(self, request: InferRequest) -> InferResponse:
        model = self.repository.route(request.model_name, request.model_version, request.parameters)
        for name, datatype, _ in request.headers:
            if datatype != "FP32":
                raise InputError(f"input {name!r}: datatype {datatype}, expected FP32 "
                                 "(NaN = missing; category values as floats)")
        if request.subjects > model.options.max_subjects_per_request:
            raise InputError(f"the request holds {request.subjects:,} subjects; this model takes at most "
                             f"{model.options.max_subjects_per_request:,} per request "
                             "(inference.max_subjects_per_request): split it")
        arrays = request.decode()
        unknown = sorted(set(request.outputs) - set(model.predictor.output_names))
        if unknown:
            raise InputError(f"requested output(s) {unknown} do not exist; the model has "
                             f"{list(model.predictor.output_names)}")
        try:
            outputs = await model.predict_async(arrays)
        except BatcherClosed:  # a reload swapped the version out after routing: its successor answers
            model = self.repository.route(request.model_name, request.model_version, request.parameters)
            outputs = await model.predict_async(arrays)
        wanted = request.outputs or list(outputs)
        return InferResponse(model.name, model.version, request.id, {name: outputs[name] for name in wanted})
