"""The KServe V2 / Triton service over gRPC and REST: server, data plane, model repository,
dynamic batcher."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "DataPlane": "data_plane",
    "DynamicBatcher": "batcher",
    "Repository": "repository",
    "rest_app": "rest",
    "start_server": "server",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
