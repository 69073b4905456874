"""Where trials run, behind one small interface: `submit(fn, *args) -> Future`, `workers`.

* `SerialExecutor`   in this process, one trial at a time (tests, debugging).
* `ProcessExecutor`  K local worker processes, started with `spawn` (a forked JAX
                     process deadlocks: XLA's threads do not survive fork).
* `RayExecutor`      Ray tasks (`ray.init(address=...)` joins a cluster; without an
                     address a local Ray instance starts): the engine users move to when
                     one machine is not enough. `fn` and its arguments must be importable
                     and picklable, as for the process pool.
"""

from __future__ import annotations

import multiprocessing
import os
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


def _set_environment(env: dict[str, str]) -> None:
    """A worker's initializer: its environment before JAX starts its backend."""
    os.environ.update(env)


class ProcessExecutor:
    """`env`: variables set in each worker before its first trial (e.g. XLA_FLAGS)."""

    def __init__(self, workers: int, env: dict[str, str] | None = None) -> None:
        if workers < 1:
            raise InputError(f"workers: expected at least 1, got {workers}")
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_set_environment, initargs=(dict(env or {}),))

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
