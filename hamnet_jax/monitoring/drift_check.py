"""`hamnet drift`'s work: a run's stored training profile against a new data file.

    report = check_run_drift("runs/a", "new.parquet")          # dict, JSON-able

The new file is read with the run's schema (no target needed). The predictions compared
are the run's calibrated MC-dropout means on the new subjects, against those it made on
its validation split when it was trained. A run trained before profiles were kept has no
`data_profile.npz`: `reference=` its training data file rebuilds the profile from the
run's own training split (inputs only: no prediction profile then).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hamnet_jax.data.dataset import load_cohort, split_cohort
from hamnet_jax.data.profile import DataProfile
from hamnet_jax.evaluation.evaluate import predict_run
from hamnet_jax.inference.predictor import primary_output
from hamnet_jax.monitoring.drift import DriftThresholds, drift_report
from hamnet_jax.run_dir import Run, load_run

PROFILE_FILE = "data_profile.npz"


def run_profile(run: Run, reference: str | Path | None = None) -> DataProfile:
    path = run.path / PROFILE_FILE
    if path.exists() or reference is None:
        return DataProfile.load(path)
    arrays = load_cohort(reference, run.schema, run.config.data)
    return DataProfile.fit(split_cohort(arrays, run.config.data)["train"], run.schema)


def check_run_drift(run_dir: str | Path, data: str | Path, reference: str | Path | None = None,
                    thresholds: DriftThresholds | None = None, predictions: bool = True) -> dict[str, Any]:
    run = load_run(run_dir)
    profile = run_profile(run, reference)
    arrays = load_cohort(data, run.schema, run.config.data, require_target=False)
    predicted = None
    if predictions and profile.predictions is not None:
        out = predict_run(run, arrays)
        predicted = out[primary_output(out)]
    report = drift_report(profile, arrays, run.schema, predicted, thresholds or DriftThresholds())
    return {"run": str(run_dir), "data": str(data), **report}
