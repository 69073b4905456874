"""Server-side dynamic batching: concurrent requests to one model run as one batch.

Handlers submit validated requests (any number of subjects each); one worker thread
waits until `max_batch` subjects are queued or the oldest request has waited
`max_queue_delay_us`, takes the oldest requests that fit `max_batch` (cut back to the
largest of `preferred_sizes` they reach, when those are given), runs the predictor once
on them, stacked and padded to its bucket, and hands each request its rows. Under load,
requests queue while a batch runs, so batches form without any delay
(`max_queue_delay_us` 0). The queue is bounded: beyond `max_queue` waiting requests
(or `max_queued_bytes`) `submit` raises `QueueFull` at once (RESOURCE_EXHAUSTED to the
client) instead of letting latency grow without limit.

A request larger than `max_batch` is not run whole (it would hold the worker while the
requests behind it wait): `run_async` submits it a batch-sized part at a time, the next
part once the last is answered, so requests arriving meanwhile are batched between its
parts (no head-of-line blocking).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from hamnet_jax.inference.predictors import Predictor


def _resolve(results: list[tuple[Any, Any, BaseException | None]]) -> None:
    for future, value, err in results:
        if future.done():  # an asyncio future whose caller went away (cancelled call)
            continue
        if err is not None:
            future.set_exception(err)
        else:
            future.set_result(value)


def _deliver(results: list[tuple[Any, Any, BaseException | None]]) -> None:
    """Resolve concurrent futures here, and each event loop's asyncio futures in one
    `call_soon_threadsafe` on that loop (asyncio futures are not thread-safe)."""
    by_loop: dict[Any, list] = {}
    for item in results:
        if isinstance(item[0], Future):
            _resolve([item])
        else:
            by_loop.setdefault(item[0].get_loop(), []).append(item)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # that loop was closed: nobody waits for these results
            pass


class QueueFull(RuntimeError):
    """The batcher's queue holds `max_queue` requests already."""


class BatcherClosed(QueueFull):
    """The batcher was closed (its model version unloaded or replaced by a reload)."""


class DynamicBatcher:
    def __init__(self, predictor: Predictor, max_batch: int, max_queue_delay_us: int = 500,
                 preferred_sizes: Sequence[int] = (), max_queue: int = 1024, max_queued_bytes: int = 256 << 20) -> None:
        self.predictor, self.max_batch = predictor, int(max_batch)
        self.delay_s = max_queue_delay_us / 1e6
        self.preferred = sorted({int(s) for s in preferred_sizes if 0 < int(s) <= max_batch})
        self.max_queue, self.max_queued_bytes = int(max_queue), int(max_queued_bytes)
        self._bytes = 0  # bytes of the requests waiting
        self._queue: collections.deque[tuple[dict[str, np.ndarray], int, float, Any]] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self._rows = 0  # subjects waiting
        self.batches = 0  # executions, and subjects per execution (for metrics)
        self.batch_subjects: collections.Counter[int] = collections.Counter()
        # for ModelStatistics (Triton's queue and compute_input / _infer / _output): requests taken from
        # the queue and their summed wait; per execution, the time stacking its inputs, running the
        # model and cutting the outputs into the requests' rows
        self.dequeued, self.queue_ns = 0, 0
        self.input_ns, self.compute_ns, self.output_ns = 0, 0, 0
        self._worker = threading.Thread(target=self._run, name="hamnet-batcher", daemon=True)
        self._worker.start()

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(self, arrays: dict[str, np.ndarray]) -> Future:
        """Queue a validated request; its Future resolves to its rows of the outputs."""
        return self._enqueue(arrays, Future())

    def submit_async(self, arrays: dict[str, np.ndarray]) -> asyncio.Future:
        """`submit` from an event loop: an asyncio future of the running loop. The worker
        resolves all of a batch's futures of one loop with a single thread-safe call (one
        wake-up of the loop per batch, not one per request)."""
        return self._enqueue(arrays, asyncio.get_running_loop().create_future())

    async def run_async(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A validated request's outputs: queued whole when it fits `max_batch`, else a part
        of `max_batch` subjects at a time, each queued behind the requests that came before."""
        rows = int(next(iter(arrays.values())).shape[0])
        if rows <= self.max_batch:
            return await self.submit_async(arrays)
        parts = []
        for start in range(0, rows, self.max_batch):
            parts.append(await self.submit_async({k: v[start:start + self.max_batch] for k, v in arrays.items()}))
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _enqueue(self, arrays: dict[str, np.ndarray], future: Any) -> Any:
        rows = int(next(iter(arrays.values())).shape[0])
        size = sum(a.nbytes for a in arrays.values())
        with self._cv:
            if self._closed:
                raise BatcherClosed("the model version was unloaded or replaced")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"the batch queue holds {self.max_queue} requests already (inference.max_queue_size); "
                                "retry later")
            if self._queue and self._bytes + size > self.max_queued_bytes:  # (one request alone always fits)
                raise QueueFull(f"the batch queue holds {self._bytes:,} bytes; this request's {size:,} would pass "
                                f"inference.max_queued_bytes ({self.max_queued_bytes:,}); retry later")
            self._queue.append((arrays, rows, time.perf_counter(), future))
            self._rows += rows
            self._bytes += size
            self._cv.notify()
        return future

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._worker.join()

    def _take(self) -> list[tuple[dict[str, np.ndarray], int, float, Any]]:
        """The next batch: once `max_batch` subjects wait or the oldest request has waited
        `max_queue_delay_us`, the oldest requests that fit `max_batch`, cut back to the
        largest preferred size they reach (Triton's dynamic batcher does the same)."""
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if not self._queue:
                return []
            deadline = self._queue[0][2] + self.delay_s
            while self._rows < self.max_batch and not self._closed:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cv.wait(remaining)
            count = rows = preferred = 0
            for item in self._queue:
                if count and rows + item[1] > self.max_batch:
                    break  # (a request larger than max_batch, submitted whole, runs alone)
                count, rows = count + 1, rows + item[1]
                if rows in self.preferred:
                    preferred = count
            batch = [self._queue.popleft() for _ in range(preferred or count)]
            now = time.perf_counter()
            self.dequeued += len(batch)
            self.queue_ns += int(sum(now - item[2] for item in batch) * 1e9)
            rows = sum(item[1] for item in batch)
            self._rows -= rows
            self._bytes -= sum(a.nbytes for item in batch for a in item[0].values())
            self.batches += 1
            self.batch_subjects[rows] += 1
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            t0 = time.perf_counter_ns()
            try:
                stacked = self._stacked(batch)
                t1 = time.perf_counter_ns()
                out = self.predictor.run_validated(stacked)
            except Exception as err:  # every waiting request gets the error; the worker lives on
                _deliver([(item[3], None, err) for item in batch])
                continue
            t2 = time.perf_counter_ns()
            results, start = [], 0
            for item in batch:
                results.append((item[3], {k: v[start:start + item[1]] for k, v in out.items()}, None))
                start += item[1]
            self.input_ns, self.compute_ns = self.input_ns + t1 - t0, self.compute_ns + t2 - t1
            self.output_ns += time.perf_counter_ns() - t2
            _deliver(results)

    def _stacked(self, batch: list) -> dict[str, np.ndarray]:
        """The requests' rows in one array per input, already padded to the predictor's
        bucket with copies of the first row (one copy instead of concatenate, then pad)."""
        rows = sum(item[1] for item in batch)
        pad = self.predictor.bucket(rows) - rows if rows <= self.predictor.max_batch else 0
        out = {}
        for k, first in batch[0][0].items():
            parts = [item[0][k] for item in batch]
            if pad > 0:
                parts.append(np.broadcast_to(first[:1], (pad,) + first.shape[1:]))
            out[k] = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return out

    def stats(self) -> dict[str, Any]:
        return {"queue_depth": self.depth, "batches": self.batches, "batch_subjects": dict(self.batch_subjects)}
