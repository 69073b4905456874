"""Wall-clock latency of predictors, measured interleaved so machine load hits all alike."""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import numpy as np

from hamnet_jax.data.batch import Batch
from hamnet_jax.inference.predictors import Predictor


def latency_ms(predicts: dict[str, Callable[[Batch], dict]], batch: Batch, reps: int = 20) -> dict[str, float]:
    """Median wall time per call of each predictor on `batch`, measured interleaved (one
    call of each per round) after a compile call, so the machine's load hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in predicts}
    for f in predicts.values():
        jax.block_until_ready(f(batch))
    for _ in range(reps):
        for name, f in predicts.items():
            start = time.perf_counter()
            jax.block_until_ready(f(batch))
            times[name].append(time.perf_counter() - start)
    return {k: float(np.median(v) * 1e3) for k, v in times.items()}


def request_latency_ms(predictor: Predictor, request: dict, batch: int, reps: int,
                       warmup: int = 3) -> tuple[float, float]:
    """p50 and p99 milliseconds of one call of `predictor` on the first `batch` rows of a
    raw request (validated once beforehand; results fetched to the host), after warm-up."""
    checked = predictor.validate({k: v[:batch] for k, v in request.items()})
    for _ in range(warmup):
        predictor.run_validated(checked)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        predictor.run_validated(checked)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)
