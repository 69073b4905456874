"""The on-disk model repository that `hamnet serve`, `hamnet bench` and the pipeline share:
one folder per model, one run directory per version."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "MODEL_FILES": "layout",
    "add_to_repository": "layout",
    "inference_options": "layout",
    "model_versions": "layout",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
