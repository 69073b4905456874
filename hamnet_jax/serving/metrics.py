"""Prometheus metrics of a server, on their own HTTP port (`/metrics`).

* `hamnet_requests_total{model,version,status}`          ModelInfer calls by gRPC status
* `hamnet_request_latency_seconds{model,version}`         histogram of handled ModelInfer calls
* `hamnet_queue_depth{model,version}`                     requests waiting in the batcher
* `hamnet_batches_total{model,version,subjects}`          batcher executions by batch size
* `hamnet_cache_hits_total` / `hamnet_cache_misses_total{model,version}`  result cache

Counters the serving objects keep anyway (batcher, cache) are read at scrape time by a
collector, so the hot path records only the request count and latency.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from hamnet_jax.inference.result_cache import CachedPredictor
from hamnet_jax.serving.repository import Repository

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class _StateCollector:
    def __init__(self, repository: Repository) -> None:
        self.repository = repository

    def collect(self) -> Iterator[Any]:
        depth = GaugeMetricFamily("hamnet_queue_depth", "requests waiting in the batcher", labels=["model", "version"])
        batches = CounterMetricFamily("hamnet_batches", "batcher executions by subjects per batch",
                                      labels=["model", "version", "subjects"])
        hits = CounterMetricFamily("hamnet_cache_hits", "subjects answered from the result cache",
                                   labels=["model", "version"])
        misses = CounterMetricFamily("hamnet_cache_misses", "subjects the model computed behind the cache",
                                     labels=["model", "version"])
        for m in self.repository.loaded():
            if m.batcher is not None:
                depth.add_metric([m.name, m.version], m.batcher.depth)
                for size, count in sorted(m.batcher.batch_subjects.items()):
                    batches.add_metric([m.name, m.version, str(size)], count)
            if isinstance(m.predictor, CachedPredictor):
                stats = m.predictor.stats()
                hits.add_metric([m.name, m.version], stats["hits"])
                misses.add_metric([m.name, m.version], stats["misses"])
        yield from (depth, batches, hits, misses)


class ServingMetrics:
    def __init__(self, repository: Repository) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("hamnet_requests", "ModelInfer calls by status", ["model", "version", "status"],
                                registry=self.registry)
        self.latency = Histogram("hamnet_request_latency_seconds", "ModelInfer latency", ["model", "version"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_StateCollector(repository))
        self.port: int | None = None
        self._http: Any = None

    def observe(self, model: str, version: str, status: str, seconds: float) -> None:
        self.requests.labels(model, version, status).inc()
        if status == "OK":
            self.latency.labels(model, version).observe(seconds)

    def serve(self, host: str, port: int) -> int:
        """Expose `/metrics` on host:port (0: a free port); returns the port."""
        self._http, _thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._http.server_port)
        return self.port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http = None
