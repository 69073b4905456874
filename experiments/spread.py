"""The spread of a figure over several runs, as the README reports it: min / median / max."""

from __future__ import annotations

import statistics


def spread(values: list[float]) -> dict[str, float]:
    """Min, median and max of `values` (at least one)."""
    if not values:
        raise ValueError("spread of no values")
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}
