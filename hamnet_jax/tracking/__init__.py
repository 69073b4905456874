"""Experiment tracking: MLflow runs for jobs, studies and pipelines, and the model registry."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "TrackedRun": "mlflow_runs",
    "flat_params": "mlflow_runs",
    "register_onnx": "registry",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
