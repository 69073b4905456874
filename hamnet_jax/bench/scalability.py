"""Deployment scalability: the gRPC service under closed-loop load at several numbers of
concurrent clients (the original documentation's "Deployment Scalability" table).

The server runs as its own process (`hamnet serve`, as deployed: access log on), on a
model repository built here from run directories and their exports; the load generator
(client/loadtest.py) runs in this process, one subject per request.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


from hamnet_jax.inference.raw_inputs import random_raw
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.client.loadtest import run_level, serialized


def start_server(repository: Path, log: Path, metrics_port: int = -1,
                 extra: Sequence[str] = ()) -> tuple[subprocess.Popen, str]:
    """`hamnet serve --repository` on a free port; (process, host:port) once it listens."""
    command = [sys.executable, "-m", "hamnet_jax.cli", "serve", "--repository", str(repository), "--port", "0",
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


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def scalability_rows(url: str, model: str, raw: RawModel, levels: Sequence[int], duration: float,
                     requests: int = 256) -> list[dict[str, Any]]:
    """One row per concurrency level: mean / p50 / p95 / p99 latency, requests/s, error rate."""
    payloads = serialized(model, [random_raw(raw.spec, raw.preprocessor, 1, seed=s) for s in range(requests)])
    return [{"model": model, **run_level(url, payloads, level, duration)} for level in levels]
