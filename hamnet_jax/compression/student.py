"""`student_config`: a smaller HAMNet for distillation, sized to a parameter budget.

The rule (documented because users must be able to predict it):

1. Start from the teacher's config with every compaction width reset to its default
   (`head_dim`, `mlp_dim`, `head_hidden_dim`, `clinical_hidden_dim`, kept features), the
   same modalities, group sizes, heads and execution settings.
2. Width first: keep the teacher's depth and try every `embed_dim` that is a multiple of
   `num_heads` up to the teacher's; the candidate whose parameter count is closest to
   `compression_ratio x teacher` wins.
3. Only if that misses by more than `tolerance` (10% of the target by default), let depth
   shrink too (fusion layers 1..L, temporal layers 1..T) and take the closest candidate of
   the whole grid, preferring the deeper on ties.
4. If no candidate is within the tolerance, raise `InputError` with the closest count.

Parameter counts are exact: `jax.eval_shape` of the initializer, no memory allocated. At a
fixed depth every weight is e x e, e x k or k wide (head and MLP widths scale with `embed_dim`
= e), so the count is a quadratic in e: three traced counts give every width's, a fourth
confirms the fit (tracing HAMNet's init costs about a second per width; a miss falls back
to tracing every width).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from hamnet_jax.data.batch import random_batch
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet


def param_count(config: HAMNetConfig) -> int:
    """Number of parameters of `HAMNet(config)` (shapes only)."""
    batch = random_batch(config, 2, num_visits=2)
    shapes = jax.eval_shape(lambda k: HAMNet(config).init({"params": k}, batch)["params"], jax.random.key(0))
    return int(sum(np.prod(s.shape) for s in jax.tree_util.tree_leaves(shapes)))


def counts_by_width(base: HAMNetConfig, widths: Sequence[int]) -> dict[int, int]:
    """Exact parameter count of `base` at every `embed_dim` in `widths` (quadratic in the
    width; see the module docstring)."""
    widths = sorted(widths)
    count = lambda e: param_count(base.replace(embed_dim=e))
    if len(widths) <= 4:
        return {e: count(e) for e in widths}
    probes = (widths[0], widths[len(widths) // 2], widths[-1])
    coeffs = np.polyfit(np.asarray(probes, np.float64), [count(e) for e in probes], 2)
    predict = lambda e: int(round(np.polyval(coeffs, e)))
    check = widths[len(widths) // 4]
    if predict(check) != count(check):
        return {e: count(e) for e in widths}
    return {e: predict(e) for e in widths}


def _dense_widths(teacher: HAMNetConfig) -> HAMNetConfig:
    return teacher.replace(head_dim=0, mlp_dim=0, head_hidden_dim=0, clinical_hidden_dim=0,
                           imaging_kept_features=(), genetic_kept_features=())


def student_config(teacher: HAMNetConfig, compression_ratio: float, tolerance: float = 0.10) -> HAMNetConfig:
    """The student config for `compression_ratio` (student params / teacher params) by the rule above."""
    if not 0.0 < compression_ratio < 1.0:
        raise InputError(f"compression_ratio must be in (0, 1) (student / teacher parameters), "
                         f"got {compression_ratio!r}")
    base = _dense_widths(teacher)
    target = compression_ratio * param_count(teacher)
    heads = teacher.num_heads
    widths = list(range(heads, max(teacher.embed_dim, heads) + 1, heads))
    counts: dict[tuple[int, int, int], int] = {}

    def closest(depths: list[tuple[int, int]]) -> tuple[tuple[int, int, int], float]:
        for layers, temporal in depths:
            if (widths[0], layers, temporal) not in counts:
                at_depth = base.replace(num_layers=layers, temporal_layers=temporal)
                counts.update({(e, layers, temporal): c for e, c in counts_by_width(at_depth, widths).items()})
        grid = [k for k in counts if (k[1], k[2]) in depths]
        best = min(grid, key=lambda k: (abs(counts[k] - target), -k[1] - k[2], -k[0]))
        return best, abs(counts[best] - target) / target

    best, miss = closest([(teacher.num_layers, teacher.temporal_layers)])
    if miss > tolerance:
        best, miss = closest([(layers, temporal) for layers in range(1, teacher.num_layers + 1)
                              for temporal in range(1, teacher.temporal_layers + 1)])
    if miss > tolerance:
        raise InputError(f"no student config within {tolerance:.0%} of {compression_ratio} x the teacher's "
                         f"parameters ({target:,.0f}); the closest has {counts[best]:,} "
                         f"(embed_dim={best[0]}, num_layers={best[1]}, temporal_layers={best[2]})")
    e, layers, temporal = best
    return base.replace(embed_dim=e, num_layers=layers, temporal_layers=temporal)
