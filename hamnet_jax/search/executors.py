"""Where trials run, behind one small interface: `submit(fn, *args) -> Future`, `workers`.

* `SerialExecutor`   in this process, one trial at a time (tests, debugging).
* `ProcessExecutor`  K local worker processes, started with `spawn` (a forked JAX
                     process deadlocks: XLA's threads do not survive fork). On Linux a
                     worker dies with the study's process (a study killed by SIGKILL or
                     the OOM killer leaves no worker training on, holding its output).
* `RayExecutor`      Ray tasks (`ray.init(address=...)` joins a cluster; without an
                     address a local Ray instance starts): the engine users move to when
                     one machine is not enough. `fn` and its arguments must be importable
                     and picklable, as for the process pool.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol

from hamnet_jax.errors import InputError


class Executor(Protocol):
    workers: int

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future: ...

    def shutdown(self) -> None: ...


class SerialExecutor:
    workers = 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as err:  # the engine records the failure
            future.set_exception(err)
        return future

    def shutdown(self) -> None:
        pass


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent exits


def _start_worker(env: dict[str, str], parent: int) -> None:
    """A worker's initializer: its environment before JAX starts its backend, and its end
    tied to the study's process `parent`."""
    os.environ.update(env)
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when `parent` exits (Linux `prctl(PR_SET_PDEATHSIG)`; elsewhere
    nothing). `parent` closes the race with a parent that died before the call."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


class ProcessExecutor:
    """`env`: variables set in each worker before its first trial (e.g. XLA_FLAGS)."""

    def __init__(self, workers: int, env: dict[str, str] | None = None) -> None:
        if workers < 1:
            raise InputError(f"workers: expected at least 1, got {workers}")
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start_worker, initargs=(dict(env or {}), os.getpid()))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self.pool.submit(fn, *args)

    def shutdown(self) -> None:
        self.pool.shutdown()


class RayExecutor:
    def __init__(self, workers: int, address: str | None = None, **init: Any) -> None:
        try:
            import ray
        except ImportError:
            raise InputError("the ray executor needs Ray: pip install 'ray[default]'") from None
        if workers < 1:
            raise InputError(f"workers: expected at least 1, got {workers}")
        if not ray.is_initialized():
            ray.init(address=address, **init)
        self.ray, self.workers = ray, workers
        self._remote = ray.remote(_call)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self._remote.remote(fn, *args).future()

    def shutdown(self) -> None:
        pass


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)
