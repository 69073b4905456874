"""The benchmark suite: latency, throughput, memory, accuracy and scalability of models
and of the service, hardware monitoring and profiler traces, and the report that puts
them in the original documentation's tables (`hamnet bench`)."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "HardwareMonitor": "hardware",
    "profile_trace": "profiling",
    "BenchSettings": "suite",
    "run_benchmarks": "suite",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
