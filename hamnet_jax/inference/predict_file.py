"""`predict_file`: a predictor over every subject of a data file, a chunk of subjects at a
time, written to CSV as it goes.

A cohort-scale file does not fit in memory as one request (500,000 subjects x 4 visits x
3,300 columns), so with `data.cache` (the default) the file is read into a cohort cache in a
temporary directory beside the output (removed afterwards: a one-off file should not leave
gigabytes in the run directory) and each chunk of `PREDICT_CHUNK` subjects is read from it,
checked, predicted and appended to the CSV. The CSV is written atomically: a killed run
leaves no partial file under the output's name.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pandas as pd

from hamnet_jax.data.dataset import open_cohort
from hamnet_jax.data.schema import Schema
from hamnet_jax.inference.predictors import Predictor
from hamnet_jax.inference.raw_inputs import cohort_to_raw, validate_raw
from hamnet_jax.io_atomic import write_atomic
from hamnet_jax.terminal_progress import progress_bar

if TYPE_CHECKING:  # type hints only: inference sits below config in the layers
    from hamnet_jax.config import DataConfig

PREDICT_CHUNK = 2048


def predict_file(predictor: Predictor, schema: Schema, data_cfg: DataConfig, data_path: str | os.PathLike,
                 out: str | os.PathLike, chunk: int | None = None, progress: bool = False) -> int:
    """Predictions for every subject of `data_path` (read with the run's `schema` and `data`
    section) written to the CSV `out` (one row per subject: `subject_id`, then the
    predictor's outputs); returns the number of subjects."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = chunk or PREDICT_CHUNK
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.cache-") as scratch:
        scratch_cfg = dataclasses.replace(data_cfg, cache_dir=scratch)  # (a one-off file: not kept)
        cohort = open_cohort(data_path, schema, scratch_cfg, require_target=False)

        def write(f: IO[str]) -> None:
            chunks = progress_bar(cohort.chunks(size), -(-cohort.num_subjects // size), "predict",
                                  f"x{size:,} subjects", progress)
            for i, part in enumerate(chunks):
                request = validate_raw(cohort_to_raw(part, predictor.spec), predictor.spec, part.subject_ids)
                frame = pd.DataFrame({"subject_id": part.subject_ids, **predictor.run_validated(request)})
                frame.to_csv(f, index=False, header=i == 0, float_format="%.4f")

        write_atomic(out, write)
    return cohort.num_subjects
