"""The V2 gRPC client side of the service: a thin client, the load generator, the request
fuzzer and the health probe. Bench, the pipeline and the tests drive the service through it."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "HAMNetClient": "client",
    "infer_request": "client",
    "malformed_requests": "fuzz",
    "run_level": "loadtest",
    "sweep": "loadtest",
    "format_table": "loadtest",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
