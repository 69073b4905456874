"""What the server records about each inference call (gRPC ModelInfer or REST infer): a request id, a JSON log line, the
Prometheus count and latency.

The request id is the request's own `id` (KServe V2), or one the server makes up; it is
echoed in the response's `id` and, for failed calls too, in the `hamnet-request-id`
trailing metadata, so a client's error can be found in the server's log. Log lines are
one JSON object each (`monitoring.logs.JsonFormatter`), what log collectors (Loki, Cloud Logging, ELK)
parse without configuration; the per-request line is INFO on the
`hamnet_jax.serving.requests` logger, so `--log-level warning` or `access_log=False`
turns it off without touching error logs.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from typing import Any

from hamnet_jax.serving.metrics import ServingMetrics

REQUEST_ID_KEY = "hamnet-request-id"
access_log = logging.getLogger("hamnet_jax.serving.requests")
_PREFIX = uuid.uuid4().hex[:12]  # this server process
_counter = itertools.count(1)


def request_id(request: Any) -> str:
    """The request's own id, else `<server process>-<sequence number>` (unique across
    restarts and replicas, and cheaper than a uuid per call)."""
    return getattr(request, "id", "") or f"{_PREFIX}-{next(_counter)}"


class RequestLog:
    """Per-call bookkeeping for the servicer; `metrics` may be None (no metrics port)."""

    def __init__(self, metrics: ServingMetrics | None = None, enabled: bool = True) -> None:
        self.metrics, self.enabled = metrics, enabled

    def finished(self, rid: str, model: str, version: str, status: str, seconds: float, subjects: int,
                 message: str = "", protocol: str = "grpc") -> None:
        """Count and log one call; `status` is the gRPC status code's name (REST calls too, so
        one dashboard reads both)."""
        if self.metrics is not None:
            self.metrics.observe(model, version, status, seconds)
        if self.enabled and access_log.isEnabledFor(logging.INFO):
            extra = {"request_id": rid, "model": model, "version": version, "status": status,
                     "latency_ms": round(seconds * 1e3, 3), "subjects": subjects, "protocol": protocol}
            if message:
                extra["error"] = message
            access_log.info("ModelInfer", extra=extra)
