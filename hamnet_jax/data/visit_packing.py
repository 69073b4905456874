"""Visit packing: how many rows a batch's per-visit work runs on (`HAMNet(packed_visits=)`).

Padded visit slots cost the per-visit encoders and the fusion as much as real visits (half
of the default cohort's slots are padding at 4 visit slots). A packed model runs them on a
fixed number of rows holding the real visits, so one compiled step serves every batch
whose real visits fit: the row count is the most real visits of any batch it will see,
rounded up, known on the host before anything compiles because the epochs' shuffles are
fixed by (seed, epoch) and evaluation chunks are fixed by their order.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from hamnet_jax.data.batched import chunk_rows, chunk_size

ROW_MULTIPLE = 8


def packing_rows(real_visits: Iterable[int], slots: int, multiple: int = ROW_MULTIPLE) -> int:
    """Rows holding the most real visits of any batch in `real_visits`, rounded up to
    `multiple`; 0 (every slot, no packing) when that saves nothing of the `slots`."""
    most = max((int(r) for r in real_visits), default=slots)
    rows = -(-max(most, 1) // multiple) * multiple
    return rows if rows < slots else 0


def chunked_packing_rows(visit_counts: np.ndarray, size: int, slots_per_subject: int) -> int:
    """`packing_rows` for `map_batched`'s chunks of `size` over subjects with `visit_counts`."""
    size = chunk_size(len(visit_counts), size)
    return packing_rows((visit_counts[idx].sum() for idx in chunk_rows(len(visit_counts), size)),
                        size * slots_per_subject)
