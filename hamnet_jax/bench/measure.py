"""Measuring models side by side: accuracy on a test split, latency and throughput at each
batch size (every model timed interleaved with the others, so load hits all alike), and
the memory each one took to load and warm up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hamnet_jax.bench.memory import device_memory, host_rss_bytes
from hamnet_jax.bench.models import BenchModel
from hamnet_jax.evaluation.timing import interleaved
from hamnet_jax.terminal_progress import progress_bar


def accuracy(model: BenchModel, request: dict[str, np.ndarray], targets: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R^2 (years) of the model's point predictions on a raw request."""
    prediction = np.asarray(model.predictor.predict(request)["prediction"], dtype=np.float64)
    if prediction.shape != targets.shape:
        raise ValueError(f"{model.name}: {prediction.shape[0]} predictions for {targets.shape[0]} targets")
    err = prediction - targets
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
            "r2": float(1 - (err ** 2).sum() / ((targets - targets.mean()) ** 2).sum())}


def warm_memory(model: BenchModel, request: dict[str, np.ndarray], batch_sizes: Sequence[int]) -> dict[str, Any]:
    """Host memory this process gained while the model ran its first call at every batch
    size (compilation, sessions, buffers), and the device's memory after (None on CPU)."""
    before = host_rss_bytes()
    for b in batch_sizes:
        model.predictor.predict({k: v[:b] for k, v in request.items()})
    return {"warmup_rss_delta_mb": (host_rss_bytes() - before) / 2**20, "device_memory": device_memory()}


def latency_table(models: Sequence[BenchModel], request: dict[str, np.ndarray], batch_sizes: Sequence[int],
                  iterations: int, progress: bool = False) -> list[dict[str, Any]]:
    """One row per (model, batch size): p50 / p95 / p99 / mean ms and samples per second.
    At each batch size the models are timed interleaved, `iterations` calls each
    (`progress`: a bar over the batch sizes on a terminal)."""
    rows = []
    for b in progress_bar(batch_sizes, len(batch_sizes), "bench: latency", "batch size", progress):
        checked = {m.name: m.predictor.validate({k: v[:b] for k, v in request.items()}) for m in models}
        stats = interleaved({m.name: (lambda m=m, c=checked[m.name]: m.predictor.run_validated(c))
                             for m in models}, iterations, warmup=2)
        for m in models:
            rows.append({"model": m.name, "backend": m.backend, "batch_size": b, **stats[m.name].as_dict(),
                         "throughput": stats[m.name].throughput(b)})
    return rows
