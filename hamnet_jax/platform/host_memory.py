"""XLA:CPU's per-step scratch memory kept out of the kernel's page-fault path.

XLA:CPU allocates each execution's temporary buffer afresh (93 MB for the standard tier's
train step at batch 128). glibc serves a block that large with `mmap` and unmaps it when it
is freed, so every step faults in ~22,700 fresh 4 KiB pages that the kernel zeroes: measured
on this 2-core machine, 75 ms of system time per step (experiments/bench_host_memory.py).
Two allocators fix it, in this order of preference (`HAMNET_MALLOC=auto`, the default):

* `tcmalloc`: gperftools' tcmalloc (`libtcmalloc_minimal.so.4`; Debian / Ubuntu package
  `libtcmalloc-minimal4`) loaded with `LD_PRELOAD`. It keeps freed spans for reuse, so the
  step's scratch is faulted in once per process, not once per step.
* `huge-pages`: glibc's `glibc.malloc.hugetlb=1` tunable (glibc >= 2.35; "Memory Allocation
  Tunables" in the glibc manual) advises such blocks onto 2 MiB transparent huge pages: 50x
  fewer faults, but the kernel still zeroes the block at every step.

Both are read when a process starts, so the `hamnet` command (and `python -m
hamnet_jax.cli`) re-executes itself with the chosen allocator before it imports JAX
(`reexec_with_fast_malloc`: same pid, same command line). `HAMNET_MALLOC=system` keeps the
process as started; `tcmalloc` or `huge-pages` asks for one of them, and is an error naming
why when it cannot be used. With `auto`, nothing changes when the environment already
preloads an allocator or names the tunable (the user's choice is kept), off Linux, or where
neither is available. A library user starts Python the same way:
`LD_PRELOAD=libtcmalloc_minimal.so.4 python train.py`, or
`GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python train.py`.
"""

from __future__ import annotations

import ctypes.util
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

from hamnet_jax.errors import InputError

TUNABLE = "glibc.malloc.hugetlb"
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
CHOICE_VARIABLE = "HAMNET_MALLOC"
CHOICES = ("auto", "tcmalloc", "huge-pages", "system")
PRELOADED_ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")
# tcmalloc reports every allocation over 1 GiB on stderr by default: a cohort's arrays would
# fill the log with it
LARGE_ALLOC_REPORT = "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"


def find_tcmalloc() -> str | None:
    """The soname of an installed tcmalloc (the dynamic loader finds it by that name), or None."""
    for name in ("tcmalloc_minimal", "tcmalloc"):
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def _preloaded(environ: dict[str, str]) -> list[str]:
    """The allocators the environment's `LD_PRELOAD` already loads."""
    return [a for a in PRELOADED_ALLOCATORS if a in environ.get("LD_PRELOAD", "")]


def _huge_pages_available() -> bool:
    libc, version = platform.libc_ver()
    try:
        if libc != "glibc" or tuple(int(v) for v in version.split(".")[:2]) < (2, 35):
            return False
    except ValueError:  # a version string this does not read
        return False
    try:
        return "[never]" not in THP_MODE.read_text()
    except OSError:  # no transparent huge pages in this kernel
        return False


def fast_malloc_env(environ: dict[str, str] | None = None,
                    find: Callable[[], str | None] = find_tcmalloc) -> dict[str, str] | None:
    """The environment to run with the allocator `HAMNET_MALLOC` chooses (module docstring),
    or None when there is nothing to change. `find`: tcmalloc's library, or None when absent.
    An allocator asked for by name that cannot be used raises `InputError` saying why."""
    environ = dict(os.environ if environ is None else environ)
    choice = environ.get(CHOICE_VARIABLE, "auto")
    if choice not in CHOICES:
        raise InputError(f"{CHOICE_VARIABLE}={choice!r}: expected one of {', '.join(CHOICES)}")
    preload, tunables = environ.get("LD_PRELOAD", ""), environ.get("GLIBC_TUNABLES", "")
    preloaded = _preloaded(environ)
    if (choice == "system" or (choice == "auto" and (preloaded or TUNABLE in tunables))
            or (choice == "tcmalloc" and preloaded == ["tcmalloc"])
            or (choice == "huge-pages" and not preloaded and f"{TUNABLE}=1" in tunables)):
        return None  # as asked already (a re-executed process, or the user's own setting)
    explicit = choice != "auto"
    if explicit and preloaded:
        raise InputError(f"{CHOICE_VARIABLE}={choice}: LD_PRELOAD already loads {preloaded[0]} ({preload!r})")
    if not sys.platform.startswith("linux"):
        if explicit:
            raise InputError(f"{CHOICE_VARIABLE}={choice}: chosen on Linux only (this is {sys.platform})")
        return None
    if choice in ("auto", "tcmalloc"):
        library = find()
        if library:
            environ["LD_PRELOAD"] = f"{library} {preload}".strip()
            environ.setdefault(LARGE_ALLOC_REPORT, str(2**62))
            return environ
        if explicit:
            raise InputError(f"{CHOICE_VARIABLE}=tcmalloc: no tcmalloc library found (Debian / Ubuntu: "
                             "apt install libtcmalloc-minimal4)")
    if not _huge_pages_available():
        if explicit:
            raise InputError(f"{CHOICE_VARIABLE}=huge-pages: needs glibc >= 2.35 and a kernel with transparent "
                             "huge pages")
        return None
    kept = ":".join(t for t in tunables.split(":") if t and not t.startswith(TUNABLE))
    environ["GLIBC_TUNABLES"] = f"{kept}:{TUNABLE}=1" if kept else f"{TUNABLE}=1"
    return environ


def malloc_in_use(environ: dict[str, str] | None = None) -> str:
    """What this process's environment says about its allocator: the preloaded library, the
    glibc tunable, or "system"."""
    environ = dict(os.environ if environ is None else environ)
    if _preloaded(environ):
        return environ["LD_PRELOAD"]
    if f"{TUNABLE}=1" in environ.get("GLIBC_TUNABLES", ""):
        return f"{TUNABLE}=1"
    return "system"


def started_as_cli() -> bool:
    """Whether this process was started as the `hamnet` command or `python -m hamnet_jax.cli`
    (not a program that imports the CLI, such as a test run)."""
    return Path(sys.argv[0]).name == "hamnet" or sys.orig_argv[1:3] == ["-m", "hamnet_jax.cli"]


def reexec_with_fast_malloc() -> None:
    """Replace this process (same pid, same command line) by one started with the faster
    allocator, unless it has one already or none applies (module docstring)."""
    environ = fast_malloc_env()
    if environ is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, environ)
