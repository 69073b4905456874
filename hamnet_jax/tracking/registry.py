"""The served model in MLflow's model registry, as an ONNX model (MLflow's `onnx` flavor):
`mlflow.pyfunc.load_model("models:/<name>/<version>")` loads it back and predicts with
ONNX Runtime on the raw-input contract (docs/inference.md), no hamnet-jax needed. The
flavor stores the graph itself, nothing pickled."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hamnet_jax.tracking.mlflow_runs import TrackedRun

ARTIFACT = "model"


def register_onnx(run: TrackedRun, graph: Path, name: str) -> str:
    """Log `graph` under the run's `model/` artifacts and register it as a new version of
    `name` (created when missing); returns the version."""
    import mlflow.onnx
    import onnx
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="hamnet-mlflow-") as folder:
        saved = Path(folder) / ARTIFACT
        mlflow.onnx.save_model(onnx.load(str(graph)), str(saved), save_as_external_data=False,
                               pip_requirements=["onnx", "onnxruntime"])
        run.client.log_artifacts(run.run_id, str(saved), ARTIFACT)
    try:
        run.client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{run.client.get_run(run.run_id).info.artifact_uri}/{ARTIFACT}"
    return str(run.client.create_model_version(name, source, run.run_id).version)
