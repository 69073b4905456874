"""V2 REST inference bodies <-> numpy: JSON tensors and Triton's binary tensor extension.

A request body is a JSON object, optionally followed by binary tensor data; then the
`Inference-Header-Content-Length` header gives the JSON part's length, and each binary
input says its size in `parameters.binary_data_size` (the inputs' bytes follow in the
order of the inputs). An output is answered in binary when the output asks for it
(`parameters.binary_data`) or the request does for all (`parameters.binary_data_output`,
what tritonclient.http sends when it names no outputs); otherwise as a JSON `data` list.
(Triton: docs/protocol/extension_binary_data.md.) In JSON, `null` (or `NaN`) is a missing
value of a floating-point input.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from hamnet_jax.serving.tensors import TensorError, array_from_bytes, checked_header

HEADER_LENGTH = "Inference-Header-Content-Length"


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """(the JSON request, the binary data after it)."""
    size = len(body)
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise TensorError(f"{HEADER_LENGTH} {header_length!r} is not a number") from None
        if not 0 <= size <= len(body):
            raise TensorError(f"{HEADER_LENGTH} {size} is outside the body's {len(body)} bytes")
    view = memoryview(body)
    try:
        request = json.loads(bytes(view[:size]))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TensorError(f"the request body is not JSON: {err}") from None
    if not isinstance(request, dict):
        raise TensorError(f"the request body is a JSON {type(request).__name__}, expected an object")
    return request, view[size:]


def input_headers(request: dict[str, Any]) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, datatype, shape) of each input, checked for form."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise TensorError("the request has no `inputs` list")
    headers = []
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise TensorError(f"inputs[{i}] is not an object with a `name`")
        name, shape = tensor["name"], tensor.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise TensorError(f"input {name!r}: `shape` must be a list of integers, got {shape!r}")
        if not isinstance(tensor.get("datatype"), str):
            raise TensorError(f"input {name!r}: `datatype` is missing")
        headers.append((name, tensor["datatype"], tuple(shape)))
    return headers


def decode_json_inputs(request: dict[str, Any], binary: memoryview) -> dict[str, np.ndarray]:
    """The request's inputs as numpy arrays: binary ones read from `binary` in order, JSON
    ones from their `data` (flat or nested, row-major)."""
    out: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in request["inputs"]:
        name, datatype = tensor["name"], tensor["datatype"]
        if name in out:
            raise TensorError(f"input {name!r} is given twice")
        dtype, shape, count = checked_header(name, datatype, tensor["shape"])
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise TensorError(f"input {name!r}: binary_data_size {size!r} runs past the body's "
                                  f"{len(binary)} bytes of binary data (from byte {offset})")
            out[name] = array_from_bytes(name, datatype, binary[offset:offset + size], dtype, shape)
            offset += size
            continue
        if "data" not in tensor:
            raise TensorError(f"input {name!r} has neither `data` nor parameters.binary_data_size")
        out[name] = _json_array(name, tensor["data"], dtype, shape, count)
    if offset != len(binary):
        raise TensorError(f"{len(binary) - offset} bytes of binary data follow the inputs' binary_data_size")
    return out


def _json_array(name: str, data: Any, dtype: np.dtype, shape: tuple[int, ...], count: int) -> np.ndarray:
    try:
        values = np.asarray(data, dtype=np.float64 if dtype.kind == "f" else dtype)  # null -> NaN for floats
    except (TypeError, ValueError) as err:
        raise TensorError(f"input {name!r}: `data` is not a rectangular list of numbers ({err})") from None
    if values.size != count:
        raise TensorError(f"input {name!r}: {values.size} values in `data`, shape {list(shape)} needs {count}")
    return values.astype(dtype, copy=False).reshape(shape)


def wants_binary(request: dict[str, Any]) -> dict[str, bool]:
    """Output name -> answered in binary, for the outputs the request names; '' -> the
    default for the others (binary_data_output)."""
    default = bool((request.get("parameters") or {}).get("binary_data_output", False))
    choice = {"": default}
    for output in request.get("outputs") or []:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise TensorError("each of `outputs` must be an object with a `name`")
        choice[output["name"]] = bool((output.get("parameters") or {}).get("binary_data", default))
    return choice


def encode_response(head: dict[str, Any], outputs: dict[str, np.ndarray],
                    binary: dict[str, bool]) -> tuple[bytes, int | None]:
    """(body, JSON length for `Inference-Header-Content-Length`, None when all JSON)."""
    tensors, blobs = [], []
    for name, value in outputs.items():
        value = np.ascontiguousarray(value, np.float32)
        tensor: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(value.shape)}
        if binary.get(name, binary[""]):
            blob = value.tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = [v if math.isfinite(v) else None for v in value.ravel().tolist()]
        tensors.append(tensor)
    text = json.dumps({**head, "outputs": tensors}, allow_nan=False).encode()
    return (b"".join([text, *blobs]), len(text)) if blobs else (text, None)

