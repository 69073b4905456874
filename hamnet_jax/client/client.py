"""A thin client for the served model: raw numpy arrays in, the outputs dict back.

    from hamnet_jax.client.client import HAMNetClient
    with HAMNetClient("127.0.0.1:8001") as client:
        out = client.predict({"clinical": x, ..., "visit_times": t})   # {"prediction": [B], ...}

Speaks the same KServe V2 protocol as any stock client (raw_input_contents, FP32); a
failed call raises `grpc.RpcError` with the server's status and message.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc


def infer_request(model: str, arrays: dict[str, np.ndarray], version: str = "", request_id: str = "") -> Any:
    message = service_pb2.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for name, value in arrays.items():
        value = np.ascontiguousarray(value, np.float32)
        message.inputs.add(name=name, datatype="FP32", shape=list(value.shape))
        message.raw_input_contents.append(value.tobytes())
    return message


def decode_response(response: Any) -> dict[str, np.ndarray]:
    if response.raw_output_contents:
        return {o.name: np.frombuffer(raw, np.float32).reshape(tuple(o.shape))
                for o, raw in zip(response.outputs, response.raw_output_contents, strict=True)}
    return {o.name: np.asarray(o.contents.fp32_contents, np.float32).reshape(tuple(o.shape))
            for o in response.outputs}


class HAMNetClient:
    def __init__(self, url: str, model: str = "hamnet", version: str = "", timeout: float = 30.0,
                 max_message_bytes: int = 64 * 1024 * 1024) -> None:
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        self.channel = grpc.insecure_channel(url, options=options)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.model, self.version, self.timeout = model, version, timeout

    def predict(self, arrays: dict[str, np.ndarray], request_id: str = "") -> dict[str, np.ndarray]:
        response = self.stub.ModelInfer(infer_request(self.model, arrays, self.version, request_id),
                                        timeout=self.timeout)
        return decode_response(response)

    def ready(self) -> bool:
        return self.stub.ModelReady(service_pb2.ModelReadyRequest(name=self.model, version=self.version),
                                    timeout=self.timeout).ready

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> HAMNetClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
