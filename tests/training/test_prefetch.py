"""Prefetching on a background thread: order kept, errors raised where they happened, the
producer stopped when the consumer stops. (Training is identical with and without it:
tests/data/test_cohort_cache.py trains the same run from the cache with prefetching and in memory
without.)"""

from __future__ import annotations

import threading
import time

import pytest

from hamnet_jax.training.prefetch import prefetch


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_items_come_in_order(depth):
    assert list(prefetch(iter(range(50)), depth)) == list(range(50))
    assert list(prefetch([], depth)) == []


def test_items_are_made_ahead_on_another_thread():
    taken: list[int] = []
    ahead: list[int] = []  # per item made: how many items ahead of the consumer it was made
    threads: set[str] = set()

    def items():
        for i in range(12):
            ahead.append(i - len(taken))
            threads.add(threading.current_thread().name)
            yield i

    stream = prefetch(items(), 2)
    taken.append(next(stream))
    deadline = time.monotonic() + 60  # (only a hang reaches it)
    while len(ahead) < 3 and time.monotonic() < deadline:  # items 1 and 2 are made while 0 is in use
        time.sleep(0.01)
    assert len(ahead) >= 3
    taken.extend(stream)
    assert taken == list(range(12))
    # at most `depth` queued and one more made, waiting for room: item i is made only after the
    # consumer got item i - 3 (the consumer appends just after it gets, hence the + 1)
    assert max(ahead) <= 2 + 1
    assert threads == {"hamnet-prefetch"}


def test_an_error_is_raised_at_the_item_where_it_happened():
    def items():
        yield 1
        yield 2
        raise KeyError("row 7")

    got = []
    with pytest.raises(KeyError, match="row 7"):
        for item in prefetch(items(), 2):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_stops_the_producer():
    made = []

    def items():
        for i in range(1000):
            made.append(i)
            yield i

    stream = prefetch(items(), 2)
    assert next(stream) == 0
    stream.close()
    assert not any(t.name == "hamnet-prefetch" and t.is_alive() for t in threading.enumerate())
    assert len(made) <= 4


def test_negative_depth_is_refused():
    with pytest.raises(ValueError, match="prefetch depth must be >= 0, got -1"):
        list(prefetch([1], -1))

