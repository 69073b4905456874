"""`hamnet drift`'s work: a run's stored training profile against a new data file.

    report = check_run_drift("runs/a", "new.parquet")          # dict, JSON-able

The new file is read with the run's schema (no target needed), through a cohort cache in a
temporary directory (`data.cache`; removed afterwards); a file of more than
`PROFILE_SUBJECTS` subjects is checked on a seeded sample of that many, as profiles are
fitted (the report's `subjects` beside `subjects_in_file`). The predictions compared
are the run's calibrated MC-dropout means on the new subjects, against those it made on
its validation split when it was trained. A run trained before profiles were kept has no
`data_profile.npz`: `reference=` its training data file rebuilds the profile from the
run's own training split (inputs only: no prediction profile then).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hamnet_jax.data.arrays import concat_cohorts
from hamnet_jax.data.dataset import open_cohort, split_cohort
from hamnet_jax.data.profile import DataProfile, last_visit_only, profile_subjects, sampled_chunks
from hamnet_jax.runs.evaluate import predict_run
from hamnet_jax.inference.predictor import primary_output
from hamnet_jax.monitoring.drift import DriftThresholds, drift_report
from hamnet_jax.runs.run_dir import Run, load_run

PROFILE_FILE = "data_profile.npz"


def run_profile(run: Run, reference: str | Path | None = None) -> DataProfile:
    path = run.path / PROFILE_FILE
    if path.exists() or reference is None:
        return DataProfile.load(path)
    arrays = open_cohort(reference, run.schema, run.config.data)  # its training data: the run's cache
    train = split_cohort(arrays, run.config.data)["train"]
    return DataProfile.fit(profile_subjects(train, run.config.training.seed), run.schema)


def check_run_drift(run_dir: str | Path, data: str | Path, reference: str | Path | None = None,
                    thresholds: DriftThresholds | None = None, predictions: bool = True) -> dict[str, Any]:
    run = load_run(run_dir)
    profile = run_profile(run, reference)
    predicting = predictions and profile.predictions is not None
    parts, predicted = [], []
    with tempfile.TemporaryDirectory(prefix="hamnet-drift-") as scratch:
        scratch_cfg = dataclasses.replace(run.config.data, cache_dir=scratch)  # (a one-off file: not kept)
        cohort = open_cohort(data, run.schema, scratch_cfg, require_target=False)
        for chunk in sampled_chunks(cohort, run.config.training.seed):
            if predicting:  # from every visit of the subject, as served
                out = predict_run(run, chunk)
                predicted.append(out[primary_output(out)])
            parts.append(last_visit_only(chunk))
    report = drift_report(profile, concat_cohorts(parts), run.schema, np.concatenate(predicted) if predicting else None,
                          thresholds or DriftThresholds())
    return {"run": str(run_dir), "data": str(data), "subjects_in_file": cohort.num_subjects, **report}
