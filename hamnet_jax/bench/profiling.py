"""`jax.profiler` traces of a benchmark, viewable in TensorBoard's profile plugin or XProf
(`tensorboard --logdir DIR`, or `xprof DIR`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def profile_trace(log_dir: str | Path) -> Iterator[Path]:
    """Trace everything JAX runs inside the block into `log_dir/plugins/profile/<run>/`."""
    import jax

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    with jax.profiler.trace(str(log_dir)):
        yield log_dir


def trace_files(log_dir: str | Path) -> list[Path]:
    """The XPlane files a trace wrote (what TensorBoard / XProf read)."""
    return sorted(Path(log_dir).glob("plugins/profile/*/*.xplane.pb"))
