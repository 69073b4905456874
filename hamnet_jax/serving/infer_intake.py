"""How a ModelInfer call comes in over gRPC: it takes its memory grant (request_memory.py)
before its body is read, and its body is read without copying the tensors
(infer_message.py).

A `grpc.aio` server runs an interceptor when a call's headers arrive and reads the body
only after it returns, so awaiting the grant here keeps a waiting call's body on the
client. The grant covers `COPIES_PER_BYTE` times the message limit while the body is
received, is resized to `COPIES_PER_BYTE` times the body as it is read, and is released
when the call's task ends, however it ends (answered, failed, cancelled by the client).
A body that does not parse reaches the handler as the `TensorError` saying why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from hamnet_jax.serving.infer_message import read_infer_request
from hamnet_jax.serving.request_memory import COPIES_PER_BYTE, RequestMemory
from hamnet_jax.serving.tensors import TensorError

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


class InferIntakeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, memory: RequestMemory, max_message_bytes: int) -> None:
        self.memory, self.max_message_bytes = memory, int(max_message_bytes)

    async def intercept_service(self, continuation: Callable, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method != INFER_METHOD:
            return handler
        memory = self.memory
        grant = await memory.acquire(COPIES_PER_BYTE * self.max_message_bytes)
        asyncio.current_task().add_done_callback(lambda _: memory.release(grant))

        def read(body: bytes) -> Any:
            memory.resize(grant, COPIES_PER_BYTE * len(body))
            try:
                return read_infer_request(body)
            except DecodeError as err:
                return TensorError(f"the request does not parse as a ModelInferRequest: {err}")
            except TensorError as err:
                return err

        return grpc.unary_unary_rpc_method_handler(handler.unary_unary, request_deserializer=read,
                                                   response_serializer=handler.response_serializer)
