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


M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


@functools.cache
def _glibc_function(name: str):
    library = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(library), name) if library else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None


def trim_c_heap() -> None:
    """Return the C heap's free pages to the system (`malloc_trim`; nothing off glibc)."""
    trim = _glibc_function("malloc_trim")
    if trim is not None:
        trim(0)


def limit_malloc_arenas(count: int) -> None:
    """At most `count` glibc malloc arenas from now on (`mallopt(M_ARENA_MAX)`; nothing off
    glibc). glibc gives threads that contend their own arenas (8 per core), and memory one
    arena frees is not reused by the others: a long-lived server with many threads then
    creeps up in resident memory (`MALLOC_ARENA_MAX` in the glibc manual's tunables)."""
    mallopt = _glibc_function("mallopt")
    if mallopt is not None:
        mallopt(M_ARENA_MAX, int(count))


def release_freed_memory() -> None:
    """Free unreachable objects, then return the free pages of pyarrow's pool and of the C
    heap (`malloc_trim`, glibc only) to the system."""
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    trim_c_heap()
