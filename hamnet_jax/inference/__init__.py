"""Predictors (JAX, ONNX Runtime, TensorRT) over the raw-input contract, calibration, the result
cache, compressed models, file prediction."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "Calibration": "calibration",
    "fit_calibration": "calibration",
    "CompressedModel": "compressed",
    "build_predictor": "factory",
    "predict_batch": "predictor",
    "JaxPredictor": "predictors",
    "OnnxPredictor": "predictors",
    "Predictor": "predictors",
    "cohort_to_raw": "raw_inputs",
    "random_raw": "raw_inputs",
    "validate_raw": "raw_inputs",
    "RawModel": "raw_model",
    "CachedPredictor": "result_cache",
    "TensorRTPredictor": "tensorrt_runtime",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
