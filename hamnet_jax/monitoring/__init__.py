"""Drift against a run's training profile, A/B statistics and experiments, alert rules, JSON
logs, job metrics."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "ABTest": "ab_experiments",
    "ABTestType": "ab_experiments",
    "ExperimentStore": "ab_experiments",
    "SequentialTest": "ab_statistics",
    "cuped": "ab_statistics",
    "msprt": "ab_statistics",
    "power": "ab_statistics",
    "sample_size": "ab_statistics",
    "two_proportion_test": "ab_statistics",
    "welch_test": "ab_statistics",
    "AlertEvaluator": "alerts",
    "AlertRule": "alerts",
    "default_rules": "alerts",
    "write_rule_file": "alerts",
    "DriftThresholds": "drift",
    "max_psi": "drift",
    "psi": "drift",
    "check_run_drift": "drift_check",
    "LiveDrift": "live_drift",
    "JsonFormatter": "logs",
    "use_json_logs": "logs",
    "JobMetrics": "metrics",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
