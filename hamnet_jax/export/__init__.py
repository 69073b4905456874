"""ONNX export (jax2onnx) at fp32 / fp16 / int8, TensorRT engines, compressed weights."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "load_compressed": "compressed_checkpoint",
    "save_compressed": "compressed_checkpoint",
    "FORMATS": "formats",
    "export_format": "formats",
    "export_run_onnx": "onnx_export",
    "build_engine": "tensorrt_engine",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
