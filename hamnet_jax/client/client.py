"""A thin client for the served model: raw numpy arrays in, the outputs dict back.

    from hamnet_jax.client.client import HAMNetClient
    with HAMNetClient("127.0.0.1:8001") as client:
        out = client.predict({"clinical": x, ..., "visit_times": t})   # {"prediction": [B], ...}

Speaks the same KServe V2 protocol as any stock client (raw_input_contents, FP32); a
failed call raises `grpc.RpcError` with the server's status and message. A secured server
(`hamnet serve --token-file --tls-cert`) takes `Credentials`: the bearer token and the
root certificates that verify it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc


@dataclasses.dataclass(frozen=True)
class Credentials:
    """How a client reaches a secured server: a bearer token sent with every call, and the
    PEM root certificates to verify its TLS certificate (None: plaintext)."""

    token: str | None = None
    root_certificates: bytes | None = None

    @classmethod
    def from_files(cls, token_file: str | os.PathLike | None = None,
                   tls_roots: str | os.PathLike | None = None) -> Credentials:
        from hamnet_jax.errors import InputError

        token = None
        if token_file is not None:
            token = Path(token_file).read_text().strip()
            if not token:
                raise InputError(f"--token-file {token_file} is empty")
        return cls(token or os.environ.get("HAMNET_API_TOKEN") or None,
                   Path(tls_roots).read_bytes() if tls_roots is not None else None)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def channel(self, url: str, options: Any = (), aio: bool = False) -> Any:
        """A channel to `url`: TLS when root certificates are given, plaintext otherwise."""
        module = grpc.aio if aio else grpc
        if self.root_certificates is None:
            return module.insecure_channel(url, options=list(options))
        return module.secure_channel(url, grpc.ssl_channel_credentials(self.root_certificates), options=list(options))


PLAINTEXT = Credentials()


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
                 max_message_bytes: int = 64 * 1024 * 1024, credentials: Credentials = PLAINTEXT) -> None:
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        self.channel = credentials.channel(url, options)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.model, self.version, self.timeout = model, version, timeout
        self.metadata = credentials.metadata() or None

    def predict(self, arrays: dict[str, np.ndarray], request_id: str = "") -> dict[str, np.ndarray]:
        response = self.stub.ModelInfer(infer_request(self.model, arrays, self.version, request_id),
                                        timeout=self.timeout, metadata=self.metadata)
        return decode_response(response)

    def ready(self) -> bool:
        return self.stub.ModelReady(service_pb2.ModelReadyRequest(name=self.model, version=self.version),
                                    timeout=self.timeout, metadata=self.metadata).ready

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> HAMNetClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
