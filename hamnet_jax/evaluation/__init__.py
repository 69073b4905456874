"""Metrics beside tabular baselines, `evaluate_run`, latency timing."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "fit_baselines": "baselines",
    "predict_baseline": "baselines",
    "classification_metrics": "metrics",
    "point_metrics": "metrics",
    "regression_metrics": "metrics",
    "LatencyStats": "timing",
    "interleaved": "timing",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
