"""The REST app's HTTP listener: uvicorn on the gRPC server's event loop.

The socket is bound before uvicorn starts, so a port in use is an `InputError` at once and
port 0 reports the port it got. uvicorn's `serve()` is not used: it installs signal
handlers, which belong to `hamnet serve` (its SIGTERM drains both protocols).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any

import uvicorn

from hamnet_jax.errors import InputError


class HttpListener:
    def __init__(self, app: Any, host: str, port: int, tls: tuple[bytes, bytes] | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
        except OSError as err:
            self.socket.close()
            raise InputError(f"cannot listen on {host}:{port} for HTTP (in use, or not an address of this "
                             f"machine): {err.strerror}") from None
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None, log_level="warning",
                                server_header=False, timeout_graceful_shutdown=None)
        config.load()
        if tls is not None:
            config.ssl = _server_context(*tls)
        self.server = uvicorn.Server(config)
        self._main: asyncio.Task | None = None

    async def start(self) -> None:
        self.server.lifespan = self.server.config.lifespan_class(self.server.config)
        await self.server.startup(sockets=[self.socket])
        self._main = asyncio.ensure_future(self.server.main_loop())

    async def stop(self, grace: float) -> None:
        """Stop taking connections; requests in flight get up to `grace` seconds."""
        self.server.config.timeout_graceful_shutdown = max(1, int(grace))
        self.server.should_exit = True
        if self._main is not None:
            await self._main
        await self.server.shutdown(sockets=[self.socket])


def _server_context(certificate_chain: bytes, private_key: bytes) -> ssl.SSLContext:
    """A TLS server context from PEM bytes (Python's ssl loads certificates from files only:
    they are written to a private temporary directory and removed at once)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory(prefix="hamnet-tls-") as folder:  # mode 0700
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert.write_bytes(certificate_chain)
        key.touch(mode=0o600)
        key.write_bytes(private_key)
        context.load_cert_chain(cert, key)
    return context
