"""Jobs that write or read a run directory: train, cross-validate, compress (prune / quantize),
distill, evaluate; the run directory format and the predictions cached in it."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "compress_run": "compress",
    "load_run_splits": "compress",
    "cross_validate": "cross_validation",
    "format_cv_table": "cross_validation",
    "evaluate_run": "evaluate",
    "format_table": "evaluate",
    "predict_run": "evaluate",
    "prediction_metrics": "evaluate",
    "Run": "run_dir",
    "load_run": "run_dir",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
