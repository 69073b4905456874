"""A study in MLflow: one parent run for the study, one child run per trial (its
configuration as parameters, each rung's metrics at step = the rung's epochs, its status),
logged as each trial job ends and once more at the end (failed trials too). A child
remembers in a tag how many rungs it logged, so a resumed study adds only what is new."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hamnet_jax.search.store import StudyStore, TrialRecord
from hamnet_jax.tracking.mlflow_runs import TrackedRun

RUNGS_TAG = "hamnet.rungs_logged"


def log_trial(parent: TrackedRun, record: TrialRecord) -> None:
    """The trial's child run, brought up to date with its record."""
    child, new = parent.child(f"trial-{record.trial:05d}", f"trial-{record.trial}", params=record.config)
    logged = 0 if new else int(child.client.get_run(child.run_id).data.tags.get(RUNGS_TAG, 0))
    for result in record.results[logged:]:
        child.log_metrics({**result["metrics"], "rung": result["rung"]}, step=int(result["budget"]))
    child.set_tags({RUNGS_TAG: len(record.results), "hamnet.status": record.status,
                    **({"hamnet.error": record.error[:5000]} if record.error else {})})
    if record.status != "running":
        child.finish(failed=record.status == "failed")


def log_study(parent: TrackedRun, study_dir: Path, report: dict[str, Any]) -> None:
    """Every trial, then the study's totals, its best objective values, its files."""
    for record in StudyStore(study_dir, {}).load_all().values():
        log_trial(parent, record)
    parent.remember(study_dir)
    parent.log_metrics({k: report[k] for k in ("trials", "failed", "trial_epochs", "full_budget") if k in report})
    for row in report.get("pareto_front", [])[:1]:
        parent.log_metrics({f"best/{k}": v for k, v in row["objectives"].items()})
    parent.log_artifacts([study_dir / "analysis.json", study_dir / "study.json"])
    parent.log_artifacts(sorted((study_dir / "plots").glob("*.png")), "plots")
