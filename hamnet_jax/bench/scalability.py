"""Deployment scalability: the gRPC service under closed-loop load at several numbers of
concurrent clients (the original documentation's "Deployment Scalability" table).

The server runs as its own process (`hamnet serve`, as deployed: access log on), on a
model repository built here from run directories and their exports; the load generator
(client/loadtest.py) runs in this process, one subject per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


from hamnet_jax.inference.raw_inputs import random_raw
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.client.loadtest import run_level, serialized


def scalability_rows(url: str, model: str, raw: RawModel, levels: Sequence[int], duration: float,
                     requests: int = 256) -> list[dict[str, Any]]:
    """One row per concurrency level: mean / p50 / p95 / p99 latency, requests/s, error rate."""
    payloads = serialized(model, [random_raw(raw.spec, raw.preprocessor, 1, seed=s) for s in range(requests)])
    return [{"model": model, **run_level(url, payloads, level, duration)} for level in levels]
