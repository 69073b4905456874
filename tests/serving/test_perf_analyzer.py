"""Triton's own load generator against the service, without a model version (`-x`), at
concurrency 1 and 32. It needs the perf_analyzer binary of `tritonclient[all]==2.41.0`
(with Debian's libb64-0d and the CUDA runtime wheel's libraries on LD_LIBRARY_PATH); set
HAMNET_PERF_ANALYZER to its path, or put it on PATH. Skipped, saying so, where it is absent."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

pytest.importorskip("grpc")

from hamnet_jax.serving.repository import Repository  # noqa: E402
from hamnet_jax.serving.server import start_server  # noqa: E402

BINARY = os.environ.get("HAMNET_PERF_ANALYZER") or shutil.which("perf_analyzer")


@pytest.mark.skipif(BINARY is None, reason="perf_analyzer is not installed (tritonclient[all]==2.41.0 bundles it; "
                                           "set HAMNET_PERF_ANALYZER)")
@pytest.mark.parametrize("concurrency", [1, 32])
def test_perf_analyzer_runs_without_a_version(tiny_run, concurrency):
    running = start_server(Repository.single_run(tiny_run), port=0, workers=4, access_log=False)
    try:
        run = subprocess.run([BINARY, "-m", "hamnet", "-u", f"127.0.0.1:{running.port}", "-i", "grpc",
                              "--input-data", "zero", "--concurrency-range", f"{concurrency}:{concurrency}",
                              "-p", "1000"], capture_output=True, text=True, timeout=300)
    finally:
        running.stop(1)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Throughput:" in run.stdout and "Inference count:" in run.stdout  # client and server statistics
