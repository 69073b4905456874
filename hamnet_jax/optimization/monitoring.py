"""`HAMNetMonitoring`: the original framework's monitoring and A/B-testing facade.

    from hamnet_jax.optimization.monitoring import ABTestType, HAMNetMonitoring, MonitoringConfig

    monitoring = HAMNetMonitoring(MonitoringConfig(log_level="info", enable_metrics=True,
                                                   enable_alerting=True, enable_ab_testing=True))
    monitoring.start_monitoring()                       # JSON logs; /metrics when enable_metrics
    monitoring.log_training_progress(epoch=1, train_loss=0.5, val_loss=0.4, learning_rate=1e-3)
    test = monitoring.create_ab_test("Model Comparison", ABTestType.MODEL_A_B,
                                     {"model": "hamnet_v1"}, {"model": "hamnet_v2"})
    test.start()
    monitoring.record_ab_test_result(test.test_id, "user_001", {"accuracy": 0.95, "latency": 0.1})
    monitoring.get_test_statistics(test.test_id)["significance"]   # the primary metric's p-value
    monitoring.check_alerts()                           # firing rules (enable_alerting)

Thin: logs are `monitoring.logs`, metrics `monitoring.metrics.JobMetrics`, alerts
`monitoring.alerts`, experiments `monitoring.ab_experiments.ExperimentStore` in
`monitoring.ab_test_dir`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hamnet_jax.config import section_from_keywords
from hamnet_jax.config.sections import MonitoringSection
from hamnet_jax.errors import InputError
from hamnet_jax.monitoring.ab_experiments import ABTest, ABTestType, ExperimentStore
from hamnet_jax.monitoring.alerts import AlertEvaluator, default_rules
from hamnet_jax.monitoring.drift import max_psi
from hamnet_jax.monitoring.logs import use_json_logs
from hamnet_jax.monitoring.metrics import JobMetrics

__all__ = ["ABTestType", "HAMNetMonitoring", "MonitoringConfig"]

log = logging.getLogger("hamnet_jax.monitoring")


def MonitoringConfig(**keys: Any) -> MonitoringSection:  # noqa: N802 - the original framework's name
    """The `monitoring:` section from keyword arguments (enums or their values), checked."""
    return section_from_keywords("monitoring", keys, "MonitoringConfig")


class HAMNetMonitoring:
    def __init__(self, config: MonitoringSection | None = None, **context: Any) -> None:
        self.config = config or MonitoringSection()
        self.context = context  # ids every log line carries (run_id=..., study=...)
        self.metrics = JobMetrics()
        self.alerts = AlertEvaluator(default_rules(self.config.alert_latency_p95_ms / 1e3, self.config.alert_error_rate,
                                                   self.config.alert_drift_psi))
        self.experiments = ExperimentStore(Path(self.config.ab_test_dir))
        self.metrics_port: int | None = None

    def start_monitoring(self) -> HAMNetMonitoring:
        use_json_logs(self.config.log_level, **self.context)
        if self.config.enable_metrics:
            self.metrics_port = self.metrics.serve(self.config.metrics_port)
            log.info("serving metrics", extra={"metrics_port": self.metrics_port})
        return self

    def stop_monitoring(self) -> None:
        self.metrics.close()
        self.metrics_port = None

    def log_training_progress(self, epoch: int, train_loss: float | None = None, val_loss: float | None = None,
                              learning_rate: float | None = None, **extra: Any) -> None:
        """One JSON log line and the training gauges (`seconds` / `samples` give throughput)."""
        self.metrics.record_epoch(epoch, train_loss, val_loss, learning_rate, extra.get("seconds"),
                                  extra.get("samples"))
        log.info("training progress", extra={"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                                             "learning_rate": learning_rate, **extra})

    def record_drift(self, report: dict[str, Any]) -> None:
        """Feed a drift report (`hamnet drift --out`, `check_run_drift`) to metrics and alerts."""
        self.metrics.record_drift(report)
        self.alerts.set_gauge("drift_psi_max", max_psi(report))
        if "predictions" in report:
            self.alerts.set_gauge("prediction_drift_psi", report["predictions"]["psi"])

    def check_alerts(self) -> list[dict[str, Any]]:
        """The rules that fire now (each logged at WARNING); [] when alerting is off."""
        if not self.config.enable_alerting:
            return []
        firing = [a for a in self.alerts.evaluate() if a["state"] == "firing"]
        for alert in firing:
            log.warning("alert firing", extra={f"alert_{k}": v for k, v in alert.items()})
        return firing

    # -- A/B tests ---------------------------------------------------------------------
    def _ab(self) -> ExperimentStore:
        if not self.config.enable_ab_testing:
            raise InputError("A/B testing is off: set monitoring.enable_ab_testing (MonitoringConfig("
                             "enable_ab_testing=True))")
        return self.experiments

    def create_ab_test(self, name: str, test_type: ABTestType | str, config_a: dict[str, Any],
                       config_b: dict[str, Any], traffic_split: float = 0.5, **options: Any) -> ABTest:
        """Arms A (control) and B; `traffic_split` is B's share of units."""
        if not 0.0 < traffic_split < 1.0:
            raise InputError(f"create_ab_test: traffic_split (B's share) must be in (0, 1), got {traffic_split}")
        return self._ab().create(name, test_type, {"A": config_a, "B": config_b},
                                 {"A": 1.0 - traffic_split, "B": traffic_split}, **options)

    def record_ab_test_result(self, test_id: str, user_id: str, metrics: dict[str, float],
                              covariates: dict[str, float] | None = None) -> str:
        return self._ab().record(test_id, user_id, metrics, covariates)

    def get_test_statistics(self, test_id: str) -> dict[str, Any]:
        return self._ab().statistics(test_id)
