"""XLA programs compiled on a background thread before their first call.

`jax.jit(f).lower(*args).compile()` fills jit's in-memory cache, so the later call
`jax.jit(f)(*args)` at the same shapes, dtypes and shardings compiles nothing (test:
tests/platform/test_compile_ahead.py), and XLA compiles without holding the GIL, so the compile
runs on another core beside the caller's work. `lower` may take `jax.ShapeDtypeStruct`s:
a program can compile before its inputs exist (the train step while the initial state
is computed).

A caller joins the returned `Compiling` before the first call: a call made while the
same program is still compiling would compile it a second time. A compile that fails
here is only logged; the real call compiles again and raises where it is made.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("hamnet_jax")


class Compiling:
    """A program compiling on a daemon thread; `wait()` returns once it is compiled."""

    def __init__(self, lower: Callable[[], Any], what: str) -> None:
        self.what = what
        self._thread = threading.Thread(target=self._work, args=(lower,), name=f"hamnet-compile-{what}",
                                        daemon=True)
        self._thread.start()

    def _work(self, lower: Callable[[], Any]) -> None:
        try:
            lower().compile()
        except Exception:  # noqa: BLE001 - the real call compiles again and raises in its caller
            log.debug("compiling %s ahead failed; it compiles when first called", self.what, exc_info=True)

    def wait(self) -> None:
        self._thread.join()

