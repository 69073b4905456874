"""Triton's own load generator, perf_analyzer, against a served model: the like-for-like anchor.

The binary comes with `tritonclient[all]==2.41.0` (a separate environment: `python3.11 -m
venv .pa && .pa/bin/pip install 'tritonclient[all]==2.41.0' nvidia-cuda-runtime-cu12`);
it needs Debian's `libb64-0d` and, even for gRPC on a CPU, the CUDA runtime wheel's
libraries, which `perf_analyzer_env` puts on LD_LIBRARY_PATH when they sit in the
binary's environment. `HAMNET_PERF_ANALYZER` names the binary, else PATH is searched.

Requests are the caller's raw inputs (NaN = missing) as base64 float32 in perf_analyzer's
`--input-data` JSON, one subject each (`-b 1`), cycled over by every client.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def perf_analyzer_binary() -> str | None:
    return os.environ.get("HAMNET_PERF_ANALYZER") or shutil.which("perf_analyzer")


def perf_analyzer_env(binary: str) -> dict[str, str]:
    """The environment with the CUDA runtime wheel's libraries of the binary's venv on LD_LIBRARY_PATH."""
    env = dict(os.environ)
    libs = sorted(Path(binary).resolve().parent.parent.glob("lib/python3*/site-packages/nvidia/cuda_runtime/lib"))
    if libs:
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(libs[0])] + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    return env


def write_input_data(requests: Sequence[Mapping[str, np.ndarray]], path: Path) -> Path:
    """perf_analyzer's `--input-data` file: one entry per one-subject request, every input
    base64 float32 without its batch dimension (JSON has no NaN; raw bytes keep it)."""
    entries = []
    for request in requests:
        entry = {}
        for name, value in request.items():
            array = np.asarray(value, "<f4")
            if array.shape[0] != 1:
                raise ValueError(f"perf_analyzer input {name!r}: one subject per request, got shape {array.shape}")
            entry[name] = {"b64": base64.b64encode(array[0].tobytes()).decode()}
        entries.append(entry)
    path.write_text(json.dumps({"data": entries}))
    return path


STABILITY = (10, 25, 100)  # perf_analyzer's --stability-percentage, tried in turn until it settles


def run_perf_analyzer(binary: str, url: str, model: str, concurrency: int, input_data: Path, report: Path,
                      measurement_ms: int = 4000, timeout: float = 600.0) -> dict[str, float]:
    """One concurrency level: throughput (infer/s) and client latency percentiles (ms) from
    perf_analyzer's CSV report. perf_analyzer measures until 3 windows agree within its
    stability percentage (p95 latency and throughput); where this machine's noise keeps
    them apart (a shared 2-core box), it is run again with a wider one, which the result
    records (`stability_percentage`). Raises with its output when it fails otherwise."""
    for stability in STABILITY:
        report.unlink(missing_ok=True)
        command = [binary, "-m", model, "-u", url, "-i", "grpc", "-b", "1", "--input-data", str(input_data),
                   "--concurrency-range", f"{concurrency}:{concurrency}", "-p", str(measurement_ms),
                   "--percentile", "95", "--stability-percentage", str(stability), "-f", str(report)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=perf_analyzer_env(binary))
        if done.returncode == 0 and report.exists():
            break
        if "Failed to obtain stable measurement" not in done.stdout + done.stderr or stability == STABILITY[-1]:
            raise RuntimeError(f"perf_analyzer failed ({done.returncode}): {done.stdout[-1500:]}{done.stderr[-1500:]}")
    with report.open() as f:
        row = next(csv.DictReader(f))
    us = {k: float(v) for k, v in row.items() if k.endswith("latency")}
    return {"concurrency": concurrency, "throughput": float(row["Inferences/Second"]),
            "p50_ms": us["p50 latency"] / 1e3, "p95_ms": us["p95 latency"] / 1e3, "p99_ms": us["p99 latency"] / 1e3,
            "errors": 0,  # (perf_analyzer stops with an error on a failed request)
            "tool": "perf_analyzer", "stability_percentage": stability}
