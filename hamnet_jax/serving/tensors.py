"""KServe V2 / Open Inference Protocol tensors <-> numpy, with the checks a server needs.

A request input arrives either typed (`contents.fp32_contents`, ...) or as bytes in
`raw_input_contents` (one entry per input, in order; what tritonclient sends). Every
mismatch raises `TensorError` naming the input: unknown datatype, contents in the wrong
typed field, element or byte counts that disagree with the shape. Responses answer in the
form the request used (raw bytes for raw requests, typed contents otherwise).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}
# the typed `contents` field each datatype travels in
CONTENT_FIELD = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
                 "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
                 "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
                 "FP64": "fp64_contents"}


MAX_ELEMENTS = 1 << 28  # per input


class TensorError(ValueError):
    """A malformed tensor; the message names the input."""


def decode_inputs(request: Any) -> dict[str, np.ndarray]:
    """The request's inputs as numpy arrays, checked for datatype and size (raw inputs are
    read-only views of the request's bytes: the model's validation copies them anyway)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise TensorError(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs")
    out: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        name = tensor.name
        if name in out:
            raise TensorError(f"input {name!r} is given twice")
        dtype, shape, count = checked_header(name, tensor.datatype, tensor.shape)
        if raw:
            out[name] = array_from_bytes(name, tensor.datatype, raw[i], dtype, shape)
            continue
        field = CONTENT_FIELD.get(tensor.datatype)
        values = getattr(tensor.contents, field) if field else []
        filled = [f.name for f, v in tensor.contents.ListFields()]
        if filled and filled != [field]:
            raise TensorError(f"input {name!r}: {tensor.datatype} values belong in contents.{field}, got {filled}")
        if len(values) != count:
            raise TensorError(f"input {name!r}: {len(values)} values in contents.{field}, shape {list(shape)} "
                              f"needs {count}")
        out[name] = np.asarray(values, dtype=dtype).reshape(shape)
    return out


def checked_header(name: str, datatype: str, shape: Any) -> tuple[np.dtype, tuple[int, ...], int]:
    """(numpy dtype, shape, element count) of an input's header, or `TensorError` naming it."""
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise TensorError(f"input {name!r}: datatype {datatype!r} is not supported; expected one of "
                          f"{sorted(DATATYPES)}")
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise TensorError(f"input {name!r}: shape {list(shape)} has a negative dimension")
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise TensorError(f"input {name!r}: shape {list(shape)} is too large")
    return dtype, shape, count


def array_from_bytes(name: str, datatype: str, data: bytes | memoryview, dtype: np.dtype,
                     shape: tuple[int, ...]) -> np.ndarray:
    """A read-only view of an input's raw bytes (little-endian, row-major), checked for size."""
    count = math.prod(shape)
    if len(data) != count * dtype.itemsize:
        raise TensorError(f"input {name!r}: {len(data)} bytes of raw data, shape {list(shape)} "
                          f"of {datatype} needs {count * dtype.itemsize}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def encode_outputs(response: Any, outputs: dict[str, np.ndarray], raw: bool, wanted: list[str] | None = None) -> None:
    """Fill `response.outputs` (FP32) with `outputs` (only `wanted` ones when given), as
    raw bytes or typed contents."""
    for name in wanted or list(outputs):
        value = np.ascontiguousarray(outputs[name], np.float32)
        tensor = response.outputs.add()
        tensor.name, tensor.datatype = name, "FP32"
        tensor.shape.extend(value.shape)
        if raw:
            response.raw_output_contents.append(value.tobytes())
        else:
            tensor.contents.fp32_contents.extend(value.ravel().tolist())
