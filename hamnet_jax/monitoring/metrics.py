"""Prometheus metrics for training and search (prometheus-client), on their own registry.

* `hamnet_train_epoch`, `hamnet_train_loss{split}`, `hamnet_train_learning_rate`
* `hamnet_train_samples_per_second`, `hamnet_train_epoch_seconds` (histogram)
* `hamnet_search_trials_total{status}`, `hamnet_search_best{objective}`
* `hamnet_drift_psi_max`, `hamnet_prediction_drift_psi`, `hamnet_drift_features{state}`

The serving metrics (requests, latency, queue, batches, cache) are the service's own
(`serving/metrics.py`); these are what a training job, a study or a drift check exports,
served with `serve()` on a port Prometheus scrapes.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from hamnet_jax.monitoring.drift import max_psi

EPOCH_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


class JobMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.epoch = Gauge("hamnet_train_epoch", "last finished epoch", registry=r)
        self.loss = Gauge("hamnet_train_loss", "loss of the last epoch", ["split"], registry=r)
        self.learning_rate = Gauge("hamnet_train_learning_rate", "learning rate at the last epoch", registry=r)
        self.samples_per_second = Gauge("hamnet_train_samples_per_second", "training throughput, last epoch",
                                        registry=r)
        self.epoch_seconds = Histogram("hamnet_train_epoch_seconds", "wall time per epoch", buckets=EPOCH_BUCKETS,
                                       registry=r)
        self.trials = Counter("hamnet_search_trials", "search jobs finished", ["status"], registry=r)
        self.best = Gauge("hamnet_search_best", "best value so far per objective", ["objective"], registry=r)
        self.drift_psi = Gauge("hamnet_drift_psi_max", "largest feature PSI of the last drift check", registry=r)
        self.prediction_psi = Gauge("hamnet_prediction_drift_psi", "prediction PSI of the last drift check",
                                    registry=r)
        self.drift_features = Gauge("hamnet_drift_features", "features by drift state", ["state"], registry=r)
        self._best: dict[str, float] = {}
        self._server: Any = None

    def record_epoch(self, epoch: int, train_loss: float | None = None, val_loss: float | None = None,
                     learning_rate: float | None = None, seconds: float | None = None,
                     samples: int | None = None) -> None:
        self.epoch.set(epoch)
        for split, value in (("train", train_loss), ("val", val_loss)):
            if value is not None:
                self.loss.labels(split).set(value)
        if learning_rate is not None:
            self.learning_rate.set(learning_rate)
        if seconds:
            self.epoch_seconds.observe(seconds)
            if samples:
                self.samples_per_second.set(samples / seconds)

    def record_trial(self, status: str, objectives: dict[str, float] | None = None) -> None:
        """A finished search job; `objectives` are its losses (lower is better)."""
        self.trials.labels(status).inc()
        for name, value in (objectives or {}).items():
            if value is not None and math.isfinite(value) and value < self._best.get(name, math.inf):
                self._best[name] = value
                self.best.labels(name).set(value)

    def record_drift(self, report: dict[str, Any]) -> None:
        self.drift_psi.set(max_psi(report))
        if "predictions" in report and math.isfinite(report["predictions"]["psi"]):
            self.prediction_psi.set(report["predictions"]["psi"])
        self.drift_features.labels("drifted").set(len(report["drifted_features"]))
        self.drift_features.labels("stable").set(len(report["features"]) - len(report["drifted_features"]))

    def serve(self, port: int = 0, addr: str = "127.0.0.1") -> int:
        """Serve `/metrics` on `port` (0: a free one); returns the port."""
        if self._server is None:
            self._server, _ = start_http_server(port, addr=addr, registry=self.registry)
        return int(self._server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
