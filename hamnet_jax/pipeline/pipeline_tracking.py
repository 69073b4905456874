"""A pipeline in MLflow: one parent run for the job, one child run per stage (its outputs'
numbers and seconds as metrics, the rest as parameters, its small files as artifacts), the
report on the parent, and the served model registered in the model registry as ONNX.

Logged from the stage files (`<stage>/stage.json`), as each stage is done and again at the
end, so a rerun that skips finished stages logs only what is missing: a stage's child is
found again by its key, and the registered version is remembered in a parent tag.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hamnet_jax.tracking.mlflow_runs import TrackedRun, flat_params, numeric
from hamnet_jax.tracking.registry import register_onnx

REGISTERED_TAG = "hamnet.registered_version"
STAGE_FILES = ("*.json", "*.png", "*.md", "*.yml")


def log_stage(parent: TrackedRun, out: Path, name: str) -> None:
    """The stage's child run, logged once."""
    marker = out / name / "stage.json"
    if not marker.exists():
        return
    child, new = parent.child(name, f"stage-{name}")
    if not new:
        return
    stage = json.loads(marker.read_text())
    outputs = stage.get("outputs", {})
    numbers = numeric(outputs)
    child.log_params({k: v for k, v in flat_params(outputs).items() if k.replace(".", "/") not in numbers})
    child.log_metrics({**numbers, "seconds": stage.get("seconds", 0.0)})
    folder = out / name
    child.log_artifacts(sorted(p for pattern in STAGE_FILES for p in folder.glob(pattern)))
    child.finish()


def log_pipeline(parent: TrackedRun, out: Path, results: dict[str, Any]) -> str | None:
    """Every stage, the report, and the served model registered under its repository name;
    returns the registered version (None when the pipeline built no repository)."""
    parent.remember(out)
    for name in results.get("stages", {}):
        log_stage(parent, out, name)
    parent.log_metrics({f"summary/{k}": v for k, v in numeric(results.get("summary", {})).items()})
    parent.log_artifacts([out / "report.md", out / "report.json", *sorted(out.glob("*.png"))])
    repository = results.get("stages", {}).get("repository")
    if repository is None:
        return None
    tags = parent.client.get_run(parent.run_id).data.tags
    if REGISTERED_TAG in tags:
        return tags[REGISTERED_TAG]
    version_dir = Path(repository["repository"]) / repository["model"] / repository["version"]
    with tempfile.TemporaryDirectory(prefix="hamnet-register-") as folder:
        graph = version_dir / "model.onnx"
        if not graph.exists():  # served by JAX or TensorRT: the run's deterministic fp32 raw-input graph
            graph = _onnx_of(version_dir, Path(folder) / "model.onnx")
        version = register_onnx(parent, graph, repository["model"])
    parent.set_tags({REGISTERED_TAG: version})
    return version


def _onnx_of(run_dir: Path, path: Path) -> Path:
    from hamnet_jax.export.onnx_export import export_run_onnx
    from hamnet_jax.inference.raw_model import RawModel
    from hamnet_jax.runs.run_dir import load_run

    export_run_onnx(RawModel.from_run(load_run(run_dir), 0), path)
    return path
