"""A real MLflow tracking server for the tests: `mlflow server` on 127.0.0.1, a SQLite store
and served artifacts in a temporary folder (skipped when MLflow is not installed)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

STARTUP_S = 180  # the deadline for the server to answer /health (a wait, not a verdict)


@contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """The URI of a running `mlflow server`, stopped on exit."""
    executable = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if executable is None:
        pytest.skip("MLflow is not installed (pip install 'hamnet-jax[dev]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (root / "mlflow-server.log").open("w")
    proc = subprocess.Popen([executable, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "artifacts")],
                            stdout=log, stderr=subprocess.STDOUT, cwd=root)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (root / "mlflow-server.log").read_text()[-2000:]
                    raise RuntimeError(f"mlflow server did not start: {tail}") from None
                time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
