"""A large `ModelInferRequest` read without copying its tensor bytes.

Python's protobuf copies every `bytes` field it parses and copies it again on each access,
so a 60 MiB request of raw tensors (what tritonclient sends) was held three times before
the model's checks made a fourth. `read_infer_request` walks the message's top-level
fields in the wire format (protobuf's encoding guide: a varint key, then a varint, a
length-delimited or a fixed-width value), keeps `raw_input_contents` (field 7) as
read-only views of the received body, and parses the rest, small, with protobuf. Small
requests are parsed by protobuf whole: its C parser is faster there.
"""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import service_pb2 as pb

from hamnet_jax.serving.tensors import TensorError

RAW_INPUT_CONTENTS = pb.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number
VIEW_FROM_BYTES = 1 << 20  # bodies this large keep their tensors as views


class InferMessage:
    """A ModelInferRequest whose `raw_input_contents` are views of the body it came in."""

    __slots__ = ("_message", "raw_input_contents")

    def __init__(self, message: Any, raw_input_contents: list[memoryview]) -> None:
        self._message, self.raw_input_contents = message, raw_input_contents

    def __getattr__(self, name: str) -> Any:
        return getattr(self._message, name)


def read_infer_request(body: bytes) -> Any:
    """The request in `body`: protobuf's own message for a small one, an `InferMessage`
    for a large one. A malformed body raises `TensorError` saying where it breaks."""
    if len(body) < VIEW_FROM_BYTES:
        return pb.ModelInferRequest.FromString(body)
    view = memoryview(body)
    rest, raw, at, end = [], [], 0, len(body)
    while at < end:
        start = at
        key, at = _varint(view, at)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, at = _varint(view, at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            length, at = _varint(view, at)
            if field == RAW_INPUT_CONTENTS:
                if at + length > end:
                    raise TensorError(f"the request ends inside raw_input_contents[{len(raw)}] (byte {at:,} of "
                                      f"{end:,}, {length:,} announced)")
                raw.append(view[at:at + length])
                at += length
                continue
            at += length
        else:
            raise TensorError(f"the request is not a ModelInferRequest: wire type {wire} at byte {start:,}")
        if at > end:
            raise TensorError(f"the request ends inside field {field} (byte {start:,} of {end:,})")
        rest.append(view[start:at])
    return InferMessage(pb.ModelInferRequest.FromString(b"".join(rest)), raw)


def _varint(view: memoryview, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(view) or shift > 63:
            raise TensorError(f"the request's varint at byte {at:,} is cut off or too long")
        byte = view[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            return value, at
        shift += 7
