"""Prometheus metrics of a server, on their own HTTP port (`/metrics`).

* `hamnet_requests_total{model,version,status}`          ModelInfer calls by gRPC status
* `hamnet_request_latency_seconds{model,version}`         histogram of handled ModelInfer calls
* `hamnet_queue_depth{model,version}`                     requests waiting in the batcher
* `hamnet_batches_total{model,version,subjects}`          batcher executions by batch size
* `hamnet_cache_hits_total` / `hamnet_cache_misses_total{model,version}`  result cache
* `hamnet_ab_assignments_total{model,version}`           requests the A/B split routed to each arm
* `hamnet_request_memory_bytes` / `hamnet_request_memory_capacity_bytes`  memory held by inference
  requests being received or computed, and its bound (request_memory.py)
* `hamnet_request_memory_waiting` / `hamnet_request_memory_waits_total`  calls waiting for it now / ever
* `hamnet_drift_*{model,version}`                         live input / prediction drift of the last
  2,000 answered subjects against the run's training data (window_subjects, features_drifted,
  psi_max, prediction_psi, modality_absent_share / _change{modality}), once 100 have come

Counters the serving objects keep anyway (batcher, cache) are read at scrape time by a
collector, so the hot path records only the request count and latency.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from hamnet_jax.inference.result_cache import CachedPredictor
from hamnet_jax.monitoring.drift import max_psi
from hamnet_jax.serving.repository import Repository
from hamnet_jax.serving.request_memory import RequestMemory

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class _StateCollector:
    def __init__(self, repository: Repository, memory: RequestMemory | None) -> None:
        self.repository, self.memory = repository, memory

    def collect(self) -> Iterator[Any]:
        if self.memory is not None:
            yield from _memory_families(self.memory)
        depth = GaugeMetricFamily("hamnet_queue_depth", "requests waiting in the batcher", labels=["model", "version"])
        batches = CounterMetricFamily("hamnet_batches", "batcher executions by subjects per batch",
                                      labels=["model", "version", "subjects"])
        hits = CounterMetricFamily("hamnet_cache_hits", "subjects answered from the result cache",
                                   labels=["model", "version"])
        misses = CounterMetricFamily("hamnet_cache_misses", "subjects the model computed behind the cache",
                                     labels=["model", "version"])
        assignments = CounterMetricFamily("hamnet_ab_assignments", "requests the A/B split sent to each version",
                                          labels=["model", "version"])
        for name, split in sorted(self.repository.splits.items()):
            for version, count in sorted(split.counts.items()):
                assignments.add_metric([name, version], count)
        yield assignments
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
        yield from _drift_families(self.repository)


def _drift_families(repository: Repository) -> Iterator[Any]:
    """Each served version's live drift (monitoring/live_drift.py) once its window fills."""
    labels = ["model", "version"]
    gauges = {key: GaugeMetricFamily(f"hamnet_drift_{key}", doc, labels=labels) for key, doc in (
        ("window_subjects", "subjects in the drift window (their last visits)"),
        ("features_drifted", "features flagged against the training data (PSI / KS with significance)"),
        ("psi_max", "the largest feature PSI against the training data"),
        ("prediction_psi", "PSI of the predictions against the validation split's"))}
    absent = GaugeMetricFamily("hamnet_drift_modality_absent_share", "share of window subjects lacking a modality",
                               labels=[*labels, "modality"])
    absent_change = GaugeMetricFamily("hamnet_drift_modality_absent_change",
                                      "change of that share against the training data", labels=[*labels, "modality"])
    for m in repository.loaded():
        report = m.drift.report() if m.drift is not None else None
        if report is None:
            continue
        key = [m.name, m.version]
        gauges["window_subjects"].add_metric(key, report["window_subjects"])
        gauges["features_drifted"].add_metric(key, len(report["drifted_features"]))
        gauges["psi_max"].add_metric(key, max_psi(report))
        if "predictions" in report:
            gauges["prediction_psi"].add_metric(key, report["predictions"]["psi"])
        for modality, row in sorted(report["modalities"].items()):
            absent.add_metric([*key, modality], row["absent_share"])
            absent_change.add_metric([*key, modality], row["change"])
    yield from (*gauges.values(), absent, absent_change)


def _memory_families(memory: RequestMemory) -> Iterator[Any]:
    for name, doc, value in (
            ("hamnet_request_memory_bytes", "memory held by inference requests being received or computed",
             memory.held),
            ("hamnet_request_memory_capacity_bytes", "the bound on it (hamnet serve --max-request-memory-mb)",
             memory.capacity),
            ("hamnet_request_memory_waiting", "inference calls waiting for request memory", memory.waiting)):
        yield GaugeMetricFamily(name, doc, value=value)
    yield CounterMetricFamily("hamnet_request_memory_waits", "inference calls that waited for request memory",
                              value=memory.waits)


UNKNOWN = "_unknown"  # the label of every model name (or version) the repository does not hold


class ServingMetrics:
    def __init__(self, repository: Repository, memory: RequestMemory | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("hamnet_requests", "ModelInfer calls by status", ["model", "version", "status"],
                                registry=self.registry)
        self.latency = Histogram("hamnet_request_latency_seconds", "ModelInfer latency", ["model", "version"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_StateCollector(repository, memory))
        self.repository = repository
        self.port: int | None = None
        self._http: Any = None

    def observe(self, model: str, version: str, status: str, seconds: float) -> None:
        """Count a call. The labels are bounded: a model or version that is not loaded (any
        name a client makes up) counts as `UNKNOWN`, so clients cannot grow the number of
        series."""
        if (model, version) not in self.repository.models:
            loaded = list(self.repository.models)  # (a snapshot of the keys: no lock on the hot path)
            if not any(name == model for name, _ in loaded):
                model, version = UNKNOWN, UNKNOWN
            elif version:
                version = UNKNOWN
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
