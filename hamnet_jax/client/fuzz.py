"""Malformed ModelInfer requests from a seeded generator, for robustness checks.

`malformed_requests(valid, model, count, seed)` mutates a valid request (name -> array)
in one of `MUTATIONS` per request, over every field a client controls: model name and
version, input names (unknown, missing, twice), datatypes, shapes (rank, width, batch
and visit counts, negative and huge dimensions), raw byte lengths, typed contents in the
wrong field or with the wrong count, ±inf, NaN visit times, subjects with nothing
measured, unknown outputs, and bytes that are no protobuf at all. Every one must be
answered with an error status; the server must stay up (tests/serving/test_serving.py with a
few hundred, experiments/bench_serving.py with 10,000).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from hamnet_jax.client.client import infer_request

Mutation = Callable[[Any, dict[str, np.ndarray], np.random.Generator], Any]


def _pick(arrays: dict[str, np.ndarray], rng: np.random.Generator) -> str:
    return list(arrays)[int(rng.integers(len(arrays)))]


def _with(arrays: dict[str, np.ndarray], name: str, value: np.ndarray) -> dict[str, np.ndarray]:
    out = dict(arrays)
    out[name] = value
    return out


def _model_name(model: str, a: dict, rng: np.random.Generator) -> Any:
    return infer_request(model + "-" + str(int(rng.integers(1000))), a)


def _version(model: str, a: dict, rng: np.random.Generator) -> Any:
    return infer_request(model, a, version=str(int(rng.integers(50, 10_000))))


def _unknown_input(model: str, a: dict, rng: np.random.Generator) -> Any:
    name = _pick(a, rng)
    out = {("x_" + k if k == name else k): v for k, v in a.items()}
    return infer_request(model, out)


def _missing_input(model: str, a: dict, rng: np.random.Generator) -> Any:
    name = _pick(a, rng)
    return infer_request(model, {k: v for k, v in a.items() if k != name})


def _twice(model: str, a: dict, rng: np.random.Generator) -> Any:
    message = infer_request(model, a)
    name = _pick(a, rng)
    message.inputs.add(name=name, datatype="FP32", shape=list(a[name].shape))
    message.raw_input_contents.append(np.ascontiguousarray(a[name], np.float32).tobytes())
    return message


def _datatype(model: str, a: dict, rng: np.random.Generator) -> Any:
    message = infer_request(model, a)
    tensor = message.inputs[int(rng.integers(len(a)))]
    tensor.datatype = str(rng.choice(["FP64", "INT32", "BYTES", "FP16", "UINT8", "XYZ", ""]))
    return message


def _rank(model: str, a: dict, rng: np.random.Generator) -> Any:
    name = _pick(a, rng)
    value = a[name]
    value = value.reshape(value.shape[0], -1) if value.ndim > 2 else value[..., None, None]
    return infer_request(model, _with(a, name, value))


def _width(model: str, a: dict, rng: np.random.Generator) -> Any:
    name = _pick(a, rng)
    value = a[name]
    extra = np.zeros(value.shape[:-1] + (int(rng.integers(1, 5)),), np.float32)
    return infer_request(model, _with(a, name, np.concatenate([value, extra], axis=-1)))


def _batch(model: str, a: dict, rng: np.random.Generator) -> Any:
    name = _pick(a, rng)
    return infer_request(model, _with(a, name, np.concatenate([a[name], a[name]])))


def _visits(model: str, a: dict, rng: np.random.Generator) -> Any:
    more = int(rng.integers(1, 8))
    out = {k: np.concatenate([v] + [v[:, :1]] * more, axis=1) for k, v in a.items()}
    return infer_request(model, out)


def _shape_field(model: str, a: dict, rng: np.random.Generator) -> Any:
    message = infer_request(model, a)
    tensor = message.inputs[int(rng.integers(len(a)))]
    dims = list(tensor.shape)
    k = int(rng.integers(len(dims)))
    dims[k] = int(rng.choice([-1, -7, 0, 1 << 40, dims[k] + 1]))
    del tensor.shape[:]
    tensor.shape.extend(dims)
    return message


def _byte_length(model: str, a: dict, rng: np.random.Generator) -> Any:
    message = infer_request(model, a)
    i = int(rng.integers(len(a)))
    raw = message.raw_input_contents[i]
    cut = int(rng.integers(1, 8))
    message.raw_input_contents[i] = raw[:-cut] if rng.random() < 0.5 else raw + b"\0" * cut
    return message


def _raw_count(model: str, a: dict, rng: np.random.Generator) -> Any:
    message = infer_request(model, a)
    del message.raw_input_contents[int(rng.integers(len(a)))]
    return message


def _typed(model: str, a: dict, rng: np.random.Generator) -> Any:
    """Typed contents with one value too many or too few, or in the wrong field."""
    message = pb.ModelInferRequest(model_name=model)
    broken = _pick(a, rng)
    for name, value in a.items():
        tensor = message.inputs.add(name=name, datatype="FP32", shape=list(value.shape))
        flat = value.ravel().tolist()
        if name != broken:
            tensor.contents.fp32_contents.extend(flat)
        elif rng.random() < 0.5:
            tensor.contents.fp32_contents.extend(flat[:-1] if rng.random() < 0.5 else flat + [0.0])
        else:
            tensor.contents.int_contents.extend([0] * len(flat))
    return message


def _inf(model: str, a: dict, rng: np.random.Generator) -> Any:
    name = _pick(a, rng)
    value = a[name].copy()
    value.reshape(-1)[int(rng.integers(value.size))] = np.inf if rng.random() < 0.5 else -np.inf
    return infer_request(model, _with(a, name, value))


def _nan_visit_time(model: str, a: dict, rng: np.random.Generator) -> Any:
    value = a["visit_times"].copy()
    value.reshape(-1)[int(rng.integers(value.size))] = np.nan
    return infer_request(model, _with(a, "visit_times", value))


def _nothing_measured(model: str, a: dict, rng: np.random.Generator) -> Any:
    out = {k: (v if k == "visit_times" else np.full_like(v, np.nan)) for k, v in a.items()}
    return infer_request(model, out)


def _unknown_output(model: str, a: dict, rng: np.random.Generator) -> Any:
    message = infer_request(model, a)
    message.outputs.add(name="age_" + str(int(rng.integers(100))))
    return message


def _garbage(model: str, a: dict, rng: np.random.Generator) -> bytes:
    return rng.bytes(int(rng.integers(1, 4096)))


MUTATIONS: dict[str, Callable] = {
    "model_name": _model_name, "version": _version, "unknown_input": _unknown_input,
    "missing_input": _missing_input, "input_twice": _twice, "datatype": _datatype, "rank": _rank,
    "width": _width, "batch": _batch, "visits": _visits, "shape_field": _shape_field,
    "byte_length": _byte_length, "raw_count": _raw_count, "typed_contents": _typed, "inf": _inf,
    "nan_visit_time": _nan_visit_time, "nothing_measured": _nothing_measured,
    "unknown_output": _unknown_output, "garbage_bytes": _garbage,
}


def malformed_requests(valid: dict[str, np.ndarray], model: str, count: int,
                       seed: int = 0) -> list[tuple[str, bytes]]:
    """`count` (mutation name, serialized request) pairs, the mutations in turn.
    `valid` must be a valid request with visit slots to spare for none of its inputs
    (the `visits` mutation adds slots beyond the model's maximum)."""
    rng = np.random.default_rng(seed)
    names = list(MUTATIONS)
    out = []
    for i in range(count):
        name = names[i % len(names)]
        message = MUTATIONS[name](model, valid, rng)
        out.append((name, message if isinstance(message, bytes) else message.SerializeToString()))
    return out
