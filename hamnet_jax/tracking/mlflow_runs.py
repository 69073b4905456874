"""Experiment tracking in MLflow: one `TrackedRun` per job, child runs for a study's trials
and a pipeline's stages, the served model registered.

Written through `MlflowClient` with explicit run ids rather than MLflow's fluent API and
its process-wide active run: a study logs many children from one process, and nothing here
depends on which run happens to be active. A job's run id is kept in its directory
(`mlflow.json`), so a resumed job logs into the run it started; a child is found again by
its `hamnet.key` tag, so a rerun adds nothing twice. Tracking never costs a job its work:
the server is checked once at the start (an unreachable or refusing server is an
`InputError` naming the URI), and a later failure to log is a warning, not a crash.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import write_json_atomic

log = logging.getLogger("hamnet_jax.tracking")
STATE_FILE = "mlflow.json"
KEY_TAG = "hamnet.key"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter's value
BATCH = 100  # params per log_batch call (MLflow's limit)


def flat_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config sections as `section.key` -> its value as text (lists as JSON)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flat_params(value, name + "."))
        elif isinstance(value, enum.Enum):
            out[name] = str(value.value)
        else:
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
            out[name] = text[:MAX_PARAM_CHARS]
    return out


def numeric(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The entries that are numbers (not booleans), as floats; nested ones as `outer/inner`."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(numeric(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


class TrackedRun:
    """One MLflow run (or the child of one)."""

    def __init__(self, client: Any, experiment_id: str, run_id: str, uri: str) -> None:
        self.client, self.experiment_id, self.run_id, self.uri = client, experiment_id, run_id, uri
        self._warned = False

    @classmethod
    def open(cls, uri: str, experiment: str, name: str, state_dir: Path | None = None,
             tags: Mapping[str, str] | None = None) -> TrackedRun:
        """The job's run: the one `state_dir/mlflow.json` names on this server (a resumed
        job), else a new one in `experiment` (created when missing; `remember` records it)."""
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as err:
            raise InputError(f"--mlflow-uri needs MLflow (pip install 'hamnet-jax[mlflow]'): {err}") from None
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            found = client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
            state = _read_state(state_dir, uri)
            if state is not None:
                client.update_run(state, status="RUNNING")
                return cls(client, experiment_id, state, uri)
            run = client.create_run(experiment_id, run_name=name, tags=dict(tags or {}))
        except Exception as err:  # connection refused, a bad URI, a server error: named, before any work
            raise InputError(f"MLflow at {uri}: {type(err).__name__}: {str(err)[:600]}") from None
        return cls(client, experiment_id, run.info.run_id, uri)

    def remember(self, state_dir: Path) -> None:
        """Record the run id in the job's directory, for a resumed job to log into (called once
        the job has made its directory: jobs refuse to start in a directory that holds files)."""
        path = Path(state_dir) / STATE_FILE
        if Path(state_dir).is_dir() and _read_state(Path(state_dir), self.uri) != self.run_id:
            write_json_atomic(path, {"tracking_uri": self.uri, "run_id": self.run_id})

    def child(self, name: str, key: str, params: Mapping[str, Any] | None = None) -> tuple[TrackedRun, bool]:
        """(the child run tagged `key`, whether it is new): found again on a rerun."""
        found = self.client.search_runs(
            [self.experiment_id], f"tags.mlflow.parentRunId = '{self.run_id}' and tags.`{KEY_TAG}` = '{key}'",
            max_results=1)
        if found:
            return TrackedRun(self.client, self.experiment_id, found[0].info.run_id, self.uri), False
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={"mlflow.parentRunId": self.run_id, KEY_TAG: key})
        child = TrackedRun(self.client, self.experiment_id, run.info.run_id, self.uri)
        if params:
            child.log_params(params)
        return child, True

    # -- logging (a failure is a warning: the job goes on) ----------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = sorted(flat_params(params).items())
        self._safely("parameters", lambda: [
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in flat[i:i + BATCH]])
            for i in range(0, len(flat), BATCH)])

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0, prefix: str = "") -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(_metric_key(prefix + k), v, now, int(step)) for k, v in numeric(metrics).items()
                if not math.isnan(v)]
        if rows:
            self._safely("metrics", lambda: self.client.log_batch(self.run_id, metrics=rows))

    def log_artifacts(self, paths: Iterable[Path], artifact_path: str | None = None) -> None:
        for path in paths:
            if path.is_file():
                self._safely(f"artifact {path.name}",
                             lambda path=path: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self._safely("tags", lambda key=key, value=value: self.client.set_tag(self.run_id, key, str(value)))

    def finish(self, failed: bool = False) -> None:
        self._safely("the run's end", lambda: self.client.set_terminated(
            self.run_id, status="FAILED" if failed else "FINISHED"))

    def _safely(self, what: str, call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as err:
            if not self._warned:  # once per run: a server that went away would repeat it every epoch
                log.warning("MLflow at %s: logging %s failed (%s: %s); the job goes on", self.uri, what,
                            type(err).__name__, str(err)[:200])
                self._warned = True


def _metric_key(key: str) -> str:
    """MLflow keys take letters, digits, `_ - . / ` and spaces; anything else becomes `_`."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def _read_state(state_dir: Path | None, uri: str) -> str | None:
    """The run id a previous start of this job recorded for this server, if any."""
    path = None if state_dir is None else Path(state_dir) / STATE_FILE
    if path is None or not path.exists():
        return None
    state = json.loads(path.read_text())
    return state["run_id"] if state.get("tracking_uri") == uri else None
