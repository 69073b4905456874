"""The KServe V2 / Triton gRPC service: server, model repository, dynamic batcher, client, load
generator."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "DynamicBatcher": "batcher",
    "Repository": "repository",
    "start_server": "server",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
