"""Wall-clock latency of calls and predictors: the one measuring code of the benchmarks,
the search's latency objective and the compression reports.

Every figure is a distribution (`LatencyStats`: p50 / p95 / p99 / mean over the timed
calls, after warm-up calls that compile and fill caches); comparisons time their sides
interleaved (one call of each per round), so the machine's load hits all sides alike.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from hamnet_jax.data.batch import Batch
from hamnet_jax.inference.predictors import Predictor


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per call over `calls` timed calls."""

    p50: float
    p95: float
    p99: float
    mean: float
    calls: int

    @classmethod
    def of(cls, seconds: list[float] | np.ndarray) -> LatencyStats:
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        if ms.size == 0:
            raise ValueError("no timed calls: reps must be >= 1")
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), float(ms.mean()), int(ms.size))

    def throughput(self, batch: int) -> float:
        """Samples per second of back-to-back calls of `batch` samples (from the mean)."""
        return batch / self.mean * 1e3

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}_ms" if k != "calls" else f"{prefix}calls": v
                for k, v in dataclasses.asdict(self).items()}


def interleaved(calls: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[str, LatencyStats]:
    """Each zero-argument call timed `reps` times, interleaved (one call of each per round),
    after `warmup` untimed calls of each; results are waited for (`block_until_ready`)."""
    seconds: dict[str, list[float]] = {k: [] for k in calls}
    for call in calls.values():
        for _ in range(warmup):
            jax.block_until_ready(call())
    for _ in range(reps):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            seconds[name].append(time.perf_counter() - start)
    return {k: LatencyStats.of(v) for k, v in seconds.items()}


def latency_ms(predicts: dict[str, Callable[[Batch], dict]], batch: Batch, reps: int = 20) -> dict[str, float]:
    """Median milliseconds per call of each predictor on `batch`, timed interleaved."""
    stats = interleaved({k: (lambda f=f: f(batch)) for k, f in predicts.items()}, reps)
    return {k: s.p50 for k, s in stats.items()}


def request_latency(predictor: Predictor, request: dict, batch: int, reps: int, warmup: int = 3) -> LatencyStats:
    """One call of `predictor` on the first `batch` rows of a raw request (validated once
    beforehand; results fetched to the host, as a caller receives them), after warm-up."""
    checked = predictor.validate({k: v[:batch] for k, v in request.items()})
    return interleaved({"call": lambda: predictor.run_validated(checked)}, reps, warmup)["call"]
