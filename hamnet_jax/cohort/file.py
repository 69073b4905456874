"""`write_cohort`: a synthetic cohort written to a data file a block of subjects at a time,
with its schema beside it (`<file>.schema.yaml`): what `hamnet cohort` and the pipeline's
built-in cohort write."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from hamnet_jax.cohort.default import COHORT_BLOCK, CohortDims, cohort_blocks
from hamnet_jax.cohort.frailty import frailty_blocks
from hamnet_jax.cohort.interactions import interactions_blocks
from hamnet_jax.data.schema import sidecar_path
from hamnet_jax.data.tables import write_table_chunks
from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import write_text_atomic
from hamnet_jax.terminal_progress import progress_bar

GENERATORS = {"hamnet": cohort_blocks, "frailty": frailty_blocks, "interactions": interactions_blocks}


def write_cohort(out: str | os.PathLike, subjects: int, seed: int = 0, dims: CohortDims | None = None,
                 generator: str = "hamnet", progress: bool = False) -> tuple[int, int, Path]:
    """(rows, columns, schema path) of the cohort written to `out` (.parquet, .csv or .npz);
    `progress`: a bar over its blocks of subjects on a terminal."""
    if generator not in GENERATORS:
        raise InputError(f"cohort generator {generator!r}: expected one of {list(GENERATORS)}")
    blocks = GENERATORS[generator](subjects, seed, dims or CohortDims())
    schema: dict = {}
    width = [0]

    def frames():
        for frame, block_schema in progress_bar(blocks, -(-subjects // COHORT_BLOCK), "cohort",
                                                f"x{COHORT_BLOCK:,} subjects", progress):
            schema.update(block_schema)
            width[0] = frame.shape[1]
            yield frame

    rows = write_table_chunks(frames(), out)
    side = sidecar_path(out)
    write_text_atomic(side, yaml.safe_dump(schema, sort_keys=False))
    return rows, width[0], side
