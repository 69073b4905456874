"""Deployment scalability: the gRPC service under closed-loop load at several numbers of
concurrent clients (the original documentation's "Deployment Scalability" table).

The server runs as its own process (`hamnet serve`, as deployed: access log on), on a
model repository built here from run directories and their exports; the load generator
(serving/loadtest.py) runs in this process, one subject per request.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hamnet_jax.inference.raw_inputs import random_raw
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.serving.loadtest import run_level, serialized


NOT_SERVED = ("checkpoints", "tb", "data_cache", "plots")  # what a copied version leaves out


def add_to_repository(root: Path, name: str, run_dir: Path, graph: Path | None, options: dict[str, Any],
                      copy: bool = False) -> Path:
    """`<root>/<name>/1/`: the run's files linked (`copy`: copied, less training's
    checkpoints, logs and caches, so the repository stands alone), the export (if any) as
    `model.onnx` or `model.engine`; `<root>/<name>/inference.yaml` holds `options`."""
    version = root / name / "1"
    version.mkdir(parents=True)

    def place(source: Path, target: Path) -> None:
        if not copy:
            target.symlink_to(source.resolve())
        elif source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)

    for item in Path(run_dir).iterdir():
        if not (copy and item.name in NOT_SERVED):
            place(item, version / item.name)
    if graph is not None:
        target = "model.engine" if options.get("backend") == "tensorrt" else "model.onnx"
        place(Path(graph), version / target)
        place(Path(f"{graph}.json"), version / f"{target}.json")
    (root / name / "inference.yaml").write_text(yaml.safe_dump({"inference": options}))
    return version


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
