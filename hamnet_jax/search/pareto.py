"""Non-dominated sorting and crowding distance (Deb et al. 2002, NSGA-II), for minimization.

Multi-objective studies rank trials by front (0 = non-dominated), then by crowding
distance within a front (boundary points first, then the most isolated), so "the best k
trials" is defined for any number of objectives: `select_best`. Objectives to maximize
are negated by the caller (`Objective.loss`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """`a` is no worse than `b` in every objective and better in one (minimization)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def fronts(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """Indices of `points` by front: [non-dominated, dominated only by the first, ...]."""
    n = len(points)
    dominated_by = [0] * n
    dominating: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominating[i].append(j)
                dominated_by[j] += 1
            elif dominates(points[j], points[i]):
                dominating[j].append(i)
                dominated_by[i] += 1
    out, current = [], [i for i in range(n) if dominated_by[i] == 0]
    while current:
        out.append(current)
        following = []
        for i in current:
            for j in dominating[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    following.append(j)
        current = sorted(following)
    return out


def crowding_distance(points: Sequence[Sequence[float]]) -> np.ndarray:
    """Per point: the sum over objectives of its neighbours' normalized gap (inf at the ends)."""
    x = np.asarray(points, dtype=float).reshape(len(points), -1)
    n, m = x.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(x[:, k], kind="stable")
        span = x[order[-1], k] - x[order[0], k]
        distance[order[0]] = distance[order[-1]] = np.inf
        if np.isfinite(span) and span > 0:  # (failed trials' +inf losses leave the gaps undefined)
            distance[order[1:-1]] += (x[order[2:], k] - x[order[:-2], k]) / span
    return distance


def select_best(points: Sequence[Sequence[float]], k: int) -> list[int]:
    """Indices of the best `k` points: whole fronts in order, the last one cut by
    descending crowding distance (ties by index, so the choice is deterministic)."""
    chosen: list[int] = []
    for front in fronts(points):
        if len(chosen) + len(front) <= k:
            chosen += front
            continue
        distance = crowding_distance([points[i] for i in front])
        ranked = sorted(range(len(front)), key=lambda j: (-distance[j], front[j]))
        chosen += [front[j] for j in ranked[:k - len(chosen)]]
        break
    return chosen
