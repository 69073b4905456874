"""Dynamic batching for training.

* `visit_bucketed_batches`: subjects of similar visit counts share a batch, and each batch
  is cut to the visit slots it needs (rounded up to a bucket boundary so the number of
  compiled shapes stays small). Padding visits cost the same compute as real ones, so
  the padding fraction before/after is the compute saved.
* `largest_batch_within_budget`: the largest batch size whose compiled train step fits a
  memory budget, read from XLA's memory analysis of the compiled step (no trial runs,
  nothing allocated).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


MAX_BUCKETS = 8  # distinct visit lengths, so at most 8 compiled train steps


def bucket_boundaries(max_visits: int, buckets: int = MAX_BUCKETS) -> list[int]:
    """Visit lengths batches are padded to: multiples of ceil(max_visits / buckets), ending
    at `max_visits` (4 visits -> 1, 2, 3, 4; 64 -> 8, 16, ..., 64)."""
    step = -(-max_visits // buckets)
    return sorted({min(step * i, max_visits) for i in range(1, buckets + 1)})


def padded_visits(num_visits: int, boundaries: Sequence[int]) -> int:
    return next(b for b in boundaries if b >= num_visits)


def epoch_batches(counts: np.ndarray, batch_size: int, rng: np.random.Generator, max_visits: int,
                  bucket: bool) -> list[tuple[np.ndarray, int]]:
    """One epoch's batches as (subject rows, visit slots). `len(counts) // batch_size`
    batches of exactly `batch_size` rows (a shuffled remainder sits the epoch out); with
    `bucket`, rows are grouped by visit count and batches come in random order."""
    n = len(counts)
    steps = max(n // batch_size, 1)
    order = rng.permutation(n)[: steps * batch_size]
    if not bucket:
        return [(order[i * batch_size:(i + 1) * batch_size], max_visits) for i in range(steps)]
    order = order[np.argsort(counts[order], kind="stable")]
    boundaries = bucket_boundaries(max_visits)
    batches = []
    for i in rng.permutation(steps):
        rows = order[i * batch_size:(i + 1) * batch_size]
        batches.append((rows, padded_visits(max(int(counts[rows].max()), 1), boundaries)))
    return batches


def padding_fraction(counts: np.ndarray, batches: Sequence[tuple[np.ndarray, int]]) -> float:
    """Share of computed visit slots that are padding."""
    slots = sum(len(rows) * v for rows, v in batches)
    real = sum(int(counts[rows].sum()) for rows, _ in batches)
    return 1.0 - real / max(slots, 1)


def compiled_memory_bytes(compiled) -> int:
    """Peak bytes of a compiled computation: arguments + outputs + temporaries - aliased."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def largest_batch_within_budget(compile_at: Callable[[int], object], budget_bytes: float, max_batch: int,
                                multiple_of: int = 1) -> tuple[int, dict[int, int]]:
    """Largest batch size (a multiple of `multiple_of`, at most `max_batch`) whose compiled
    step needs at most `budget_bytes`, by doubling then bisection over `compile_at(batch)`.
    Returns the size and every measured {batch: bytes}."""
    measured: dict[int, int] = {}

    def fits(b: int) -> bool:
        if b not in measured:
            measured[b] = compiled_memory_bytes(compile_at(b))
        return measured[b] <= budget_bytes

    unit = max(multiple_of, 1)
    if not fits(unit):
        raise MemoryError(f"even a batch of {unit} needs {measured[unit] / 2**20:.1f} MiB, over the "
                          f"{budget_bytes / 2**20:.1f} MiB budget")
    lo, hi = 1, 2  # in units
    while hi * unit <= max_batch and fits(hi * unit):
        lo, hi = hi, hi * 2
    hi = min(hi, max_batch // unit + 1)
    while hi - lo > 1:  # lo fits, hi does not (or is past max_batch)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid * unit) else (lo, mid)
    return lo * unit, measured
