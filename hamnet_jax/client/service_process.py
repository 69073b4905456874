"""The service as a separate process, for the tools that measure or check it from outside:
`hamnet serve --repository DIR` started on a free port, then stopped with SIGTERM (its
graceful drain), as an operator runs it. Bench and the pipeline reach it through here and
the client, never by importing the server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def serve_process(repository: Path | None, log: Path, metrics_port: int = -1,
                 extra: Sequence[str] = ()) -> tuple[subprocess.Popen, str]:
    """`hamnet serve --repository` (None: what `extra` names, e.g. `--run RUN`) on a free
    port; (process, host:port) once it listens."""
    source = ["--repository", str(repository)] if repository is not None else []
    command = [sys.executable, "-m", "hamnet_jax.cli", "serve", *source, "--port", "0",
               "--metrics-port", str(metrics_port), *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
                               env={**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")})
    line = process.stdout.readline()
    found = re.search(r" on ([\d.]+:\d+) \(KServe", line)
    if not found:
        process.kill()
        process.wait()
        raise RuntimeError(f"hamnet serve did not start: {line!r}; see {log}:\n{log.read_text()[-2000:]}")
    return process, found.group(1)


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
