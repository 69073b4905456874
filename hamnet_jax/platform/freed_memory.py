"""`release_freed_memory`: hand memory the process has freed back to the system.

Reading a large file leaves freed memory in the allocators' pools: pyarrow's (mimalloc)
and glibc's heap (pandas' and numpy's small objects). Measured after building the cohort
cache of a 500,000-subject file: 1.22 GiB resident, 0.21 GiB once released; left in the
pools, it stays in the process's resident memory for the rest of a training run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def trim_c_heap() -> None:
    """Return the C heap's free pages to the system (`malloc_trim`; nothing off glibc)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def release_freed_memory() -> None:
    """Free unreachable objects, then return the free pages of pyarrow's pool and of the C
    heap (`malloc_trim`, glibc only) to the system."""
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    trim_c_heap()
