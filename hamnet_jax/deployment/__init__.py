"""The Dockerfile, Kubernetes manifests and KServe ServingRuntime / InferenceServices, generated
and checked."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "dockerignore": "dockerfile",
    "check_manifests": "kubernetes",
    "inference_service": "kserve",
    "kserve_documents": "kserve",
    "manifests": "kubernetes",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
