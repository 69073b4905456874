"""`run_pipeline`: the end-to-end optimization job, stage by stage, resumable.

    cohort -> baseline -> nas -> hpo -> train -> distill -> prune -> quantize -> export
           -> bench -> repository -> monitoring

Each stage is switched by the `optimization:` section (and `HAMNET_ENABLE_*`):
`enable_nas` (nas), `enable_hyperparameter_opt` (hpo), any of those or
`enable_regularization` / `enable_training_opt` (train: the searched, regularized,
optimized model), `enable_distillation` (distill), `enable_pruning` (prune),
`enable_quantization` (quantize; default: with pruning), `enable_inference_opt` (export),
`enable_benchmarking` (bench), `enable_monitoring` (monitoring). The cohort stage runs
when no data file is given (the preset's built-in cohort); baseline and repository
always run.

Distillation comes before pruning and quantization, not after: its student is a new
network (the searched architecture, taught by the baseline), so distilling last would
drop the pruning and quantization before it; in this order every switched-on technique
is in the final model.

A stage is done when its `<stage>/stage.json` exists (written atomically, last); a rerun
of the same command skips done stages and continues the one that was killed from what it
left. `pipeline.json` holds the job's identity (data and resolved config): rerunning in
the same directory with other inputs is an error, not a mix of two jobs.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hamnet_jax.config import Config, load_config
from hamnet_jax.data.schema import Schema, sidecar_path
from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import AppendLog, write_json_atomic
from hamnet_jax.job_dir import as_stored, claim, data_identity, differing_keys, stored_identity
from hamnet_jax.file_lock import owned
from hamnet_jax.kill_points import kill_point, kill_scope
from hamnet_jax.pipeline.deliver import stage_monitoring, stage_repository
from hamnet_jax.pipeline.measure import stage_bench
from hamnet_jax.pipeline.presets import Preset, preset
from hamnet_jax.pipeline.report import write_report
from hamnet_jax.pipeline.stage_configs import trains_again, unused_keys
from hamnet_jax.pipeline.stages import STAGE_FUNCTIONS, STAGES, Context, Done, check_served_uncertainty

BUILTIN_COHORT = "cohort/cohort.parquet"


def planned_stages(config: Config, builtin_cohort: bool) -> list[str]:
    s = config.section("optimization")
    on = {"cohort": builtin_cohort, "baseline": True, "nas": s.enable_nas, "hpo": s.enable_hyperparameter_opt,
          "train": trains_again(config), "distill": s.enable_distillation, "prune": s.enable_pruning,
          "quantize": s.quantization, "export": s.enable_inference_opt, "bench": s.enable_benchmarking,
          "repository": True, "monitoring": s.enable_monitoring}
    return [name for name in STAGES if on[name]]


def _identity(config: Config, data: Path | None, chosen: Preset | None,
              schema_path: str | os.PathLike | None) -> dict[str, Any]:
    """The pipeline's inputs: the data by content (job_dir.py) and its schema, or the preset
    that generates the built-in cohort; the config."""
    if data is None:
        source: dict[str, Any] = {"builtin": chosen.name if chosen else "default", "seed": chosen.seed if chosen else 0}
        schema = None
    else:
        source, schema = data_identity(data), _schema(data, schema_path).to_dict()
    return as_stored({"data": source, "schema": schema, "config": config.identity()})


def _claim(out: Path, identity: dict[str, Any]) -> None:
    stored = stored_identity(out, "pipeline.json")
    if stored is None:
        claim(out, "pipeline.json", identity)
    elif stored != identity:
        raise InputError(f"{out} holds a pipeline of other inputs (its {', '.join(differing_keys(stored, identity))} "
                         "differ); rerun it with the same ones to continue it, or choose another --out")


def _event(out: Path, record: dict[str, Any]) -> None:
    AppendLog(out / "events.jsonl").append(
        {"time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), **record})


def _builtin_cohort(out: Path, chosen: Preset | None) -> dict[str, Any]:
    from hamnet_jax.cohort.default import DEFAULT_SUBJECTS, CohortDims
    from hamnet_jax.cohort.file import write_cohort

    path = out / BUILTIN_COHORT
    subjects = chosen.subjects if chosen else DEFAULT_SUBJECTS
    rows, columns, _ = write_cohort(path, subjects, chosen.seed if chosen else 0,
                                    chosen.dims if chosen else CohortDims())
    return {"data": str(path), "subjects": subjects, "rows": rows, "columns": columns}


def run_pipeline(out: str | os.PathLike | None = None, data: str | os.PathLike | None = None,
                 config_path: str | os.PathLike | None = None, preset_name: str | None = None,
                 progress: bool = True, environ: Mapping[str, str] | None = None,
                 say: Callable[[str], None] | None = None, schema_path: str | os.PathLike | None = None,
                 overrides: Mapping[str, Any] | None = None,
                 on_stage_done: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or continue) the pipeline into `out` (default `$HAMNET_OUTPUT_DIR/pipeline`) on
    `data` (default: the preset's built-in synthetic cohort; its schema: `schema_path`, else
    the file's sidecar); returns the results the report was written from (`summary`,
    `table`, `report`) and each stage's outputs (`stages`). `overrides` (YAML sections) go
    over the config file, under `HAMNET_*`; `on_stage_done(name)` is called as each stage
    is written (an experiment tracker's hook)."""
    chosen = preset(preset_name)
    config = load_config(config_path, environ, chosen.config if chosen else None, overrides)
    check_served_uncertainty(config)
    out = Path(out) if out is not None else Path(config.general.output_dir) / "pipeline"
    data_path = Path(data) if data is not None else None
    _claim(out, _identity(config, data_path, chosen, schema_path))
    with owned(out, "pipeline"):  # (two runs of one pipeline at once: the second is refused)
        say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        unused = unused_keys(config)
        if unused:
            say(f"pipeline: note: config values the switched-off stages do not use: {', '.join(unused)}")
        plan = planned_stages(config, data_path is None)
        done: Done = {}

        def stage(i: int, name: str, work: Callable[[], dict[str, Any]]) -> None:
            marker = out / name / "stage.json"
            if marker.exists():
                done[name] = json.loads(marker.read_text())["outputs"]
                say(f"pipeline [{i}/{len(plan)}] {name}: done earlier")
                return
            say(f"pipeline [{i}/{len(plan)}] {name} ...")
            _event(out, {"stage": name, "event": "start"})
            started = time.perf_counter()
            with kill_scope(name):
                kill_point("pipeline.stage_started")
                outputs = work()
            seconds = time.perf_counter() - started
            write_json_atomic(marker, {"stage": name, "seconds": seconds, "outputs": outputs,
                                       "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")})
            _event(out, {"stage": name, "event": "done", "seconds": seconds})
            done[name] = outputs
            say(f"pipeline [{i}/{len(plan)}] {name}: done in {seconds:.0f} s")
            if on_stage_done is not None:
                on_stage_done(name)

        if data_path is None:
            stage(1, "cohort", lambda: _builtin_cohort(out, chosen))
            data_path = Path(done["cohort"]["data"])
        ctx = Context(out, data_path, _schema(data_path, schema_path), config, progress)
        for i, name in enumerate(plan, 1):
            if name != "cohort":
                stage(i, name, lambda name=name: _STAGES[name](ctx, done))
        results = write_report(out)
        say(f"pipeline: report {results['report']}")
        return {**results, "stages": done}


def _schema(data: Path, schema_path: str | os.PathLike | None) -> Schema:
    side = Path(schema_path) if schema_path else sidecar_path(data)
    if not side.exists():
        raise InputError(f"--data {data}: its schema {side} does not exist (give --schema, or write the data "
                         "with `hamnet cohort`)")
    return Schema.load(side)


_STAGES = {**STAGE_FUNCTIONS, "bench": stage_bench, "repository": stage_repository, "monitoring": stage_monitoring}
