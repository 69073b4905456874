"""`prefetch`: the next items of an iterator made on a background thread while the caller
works on the current one.

The training loop's items are device batches: reading subjects from the cohort cache,
standardizing them and transferring them to the devices happen while the previous step
computes, so the step never waits on the host. Order is kept (one producer), so training
is identical with and without it. numpy's reads and copies and JAX's transfers release the
GIL, which is what lets them overlap the step. An exception in the producer is raised in
the consumer at the item where it happened; closing the generator early stops the
producer. (`flax.jax_utils.prefetch_to_device` covers single-process device placement only;
this also carries a multi-host job's process-local rows.)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """`items` in order, up to `depth` of them made ahead on a background thread
    (`depth` 0: made in the caller's thread, when asked for)."""
    if depth < 0:
        raise ValueError(f"prefetch depth must be >= 0, got {depth}")
    if depth == 0:
        yield from items
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            put(_Failed(e))
            return
        put(_DONE)

    worker = threading.Thread(target=produce, name="hamnet-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()
