"""Memory figures: this process's host memory (resident now and at its peak) and an
accelerator's memory (what XLA's allocator reports; the CPU backend reports none)."""

from __future__ import annotations

import resource
import sys
from typing import Any

import psutil


def host_rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process (this one by default) now."""
    return int(psutil.Process(pid).memory_info().rss)


def peak_rss_bytes() -> int:
    """The largest resident memory this process has had (getrusage: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def device_memory(device: Any | None = None) -> dict[str, int] | None:
    """`bytes_in_use`, `peak_bytes_in_use` and `bytes_limit` of a JAX device (the first by
    default), or None where the backend keeps no such statistics (XLA:CPU)."""
    import jax

    stats = (device or jax.devices()[0]).memory_stats()
    if not stats:
        return None
    return {k: int(stats[k]) for k in ("bytes_in_use", "peak_bytes_in_use", "bytes_limit") if k in stats}
