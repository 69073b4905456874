"""The original framework's classes, one module per original module name, and its two
headline entry points (`hamnet_jax.optimization.pipeline`), imported on first use:

    from hamnet_jax.optimization import create_comprehensive_optimizer, optimize_hamnet_pipeline
"""

from typing import Any

__all__ = ["create_comprehensive_optimizer", "optimize_hamnet_pipeline"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hamnet_jax.optimization import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'hamnet_jax.optimization' has no attribute {name!r}")
