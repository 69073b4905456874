"""XLA:CPU's per-step scratch memory on transparent huge pages.

XLA:CPU allocates each execution's temporary buffer afresh (93 MB for the standard tier's
train step at batch 128) and glibc serves a block that large with `mmap`, so every step
faults in ~22,700 fresh 4 KiB pages and frees them again: measured on this 2-core machine,
7.1 s of system time in 13.6 s of training steps. glibc's `glibc.malloc.hugetlb=1` tunable
(glibc >= 2.35; "Memory Allocation Tunables" in the glibc manual) advises such blocks onto
2 MiB transparent huge pages: 53x fewer page faults, system time 7.1 -> 2.1 s, the steps
1.25x faster (experiments/bench_train.py measures both sides in one process).

glibc reads tunables once, when a process starts, so the `hamnet` command (and `python -m
hamnet_jax.cli`) re-executes itself with the tunable set before it imports JAX
(`reexec_with_huge_page_malloc`); a library user sets it before starting
Python: `GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python train.py`. Nothing changes where the
kernel offers no transparent huge pages, glibc is not the C library, or `GLIBC_TUNABLES`
already says `glibc.malloc.hugetlb` (the user's choice is kept).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb"
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def huge_page_malloc_env(environ: dict[str, str] | None = None) -> dict[str, str] | None:
    """The environment to run with huge-page malloc, or None when there is nothing to change."""
    environ = dict(os.environ if environ is None else environ)
    tunables = environ.get("GLIBC_TUNABLES", "")
    if TUNABLE in tunables or not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        if "[never]" in THP_MODE.read_text():
            return None
    except OSError:  # no transparent huge pages in this kernel
        return None
    environ["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}=1" if tunables else f"{TUNABLE}=1"
    return environ


def started_as_cli() -> bool:
    """Whether this process was started as the `hamnet` command or `python -m hamnet_jax.cli`
    (not a program that imports the CLI, such as a test run)."""
    return Path(sys.argv[0]).name == "hamnet" or sys.orig_argv[1:3] == ["-m", "hamnet_jax.cli"]


def reexec_with_huge_page_malloc() -> None:
    """Replace this process (same pid, same command line) by one started with huge-page
    malloc, unless it has it already or it does not apply (module docstring)."""
    environ = huge_page_malloc_env()
    if environ is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, environ)
