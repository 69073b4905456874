"""The pipeline's stages: each writes its own directory under the pipeline's and returns
what the report and the later stages read (stored in `<stage>/stage.json` by the runner).

A stage killed part-way is continued from what it left: a training stage from its
checkpoints, a study from its store; a stage with nothing to continue starts its
directory afresh. The model stages form a chain: each compresses the model the stage
before it produced (baseline -> searched model -> distilled -> pruned -> quantized).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hamnet_jax.config import Config
from hamnet_jax.data.schema import Schema
from hamnet_jax.errors import InputError
from hamnet_jax.pipeline.stage_configs import baseline_config, optimized_config, search_base
from hamnet_jax.training.checkpoints import holds_checkpoints

STAGES = ("cohort", "baseline", "nas", "hpo", "train", "distill", "prune", "quantize", "export", "bench",
          "repository", "monitoring")
MODEL_STAGES = ("baseline", "train", "distill", "prune", "quantize")


@dataclasses.dataclass(frozen=True)
class Context:
    out: Path
    data: Path
    schema: Schema
    config: Config  # the merged config (preset < file < HAMNET_*)
    progress: bool = True

    def stage_dir(self, name: str) -> Path:
        return self.out / name


Done = dict[str, dict[str, Any]]  # finished stages' outputs, by name


def current_run(done: Done) -> Path:
    """The chain's latest model: the run of the last model stage that ran."""
    for name in reversed(MODEL_STAGES):
        if name in done:
            return Path(done[name]["run"])
    raise InputError("pipeline: no model stage has run yet")


def continue_or_clear(run_dir: Path, marker: str | None = None) -> bool:
    """True when `run_dir` holds what a killed job left to continue from (`marker`, a glob;
    default: a training checkpoint); else the directory is cleared (it is the stage's own)
    and the job starts afresh."""
    if holds_checkpoints(run_dir / "checkpoints") if marker is None else any(run_dir.glob(marker)):
        return True
    shutil.rmtree(run_dir, ignore_errors=True)
    return False


def _model_result(run_dir: Path, summary: dict[str, Any], row: str) -> dict[str, Any]:
    return {"run": str(run_dir), "row": row, "test": summary["test"]}


def _train(ctx: Context, config: Config, run_dir: Path, row: str) -> dict[str, Any]:
    from hamnet_jax.runs.train import train_run

    resume = continue_or_clear(run_dir)
    summary = train_run(ctx.data, ctx.schema, config, run_dir, resume=resume, progress=ctx.progress)
    return {**_model_result(run_dir, summary, row), "epochs": summary["epochs_run"],
            "best_epoch": summary["best_epoch"]}


def stage_baseline(ctx: Context, done: Done) -> dict[str, Any]:
    return _train(ctx, baseline_config(ctx.config), ctx.stage_dir("baseline") / "run", "Baseline HAMNet")


def _pick(front: list[dict[str, Any]], names: list[str], tolerance: float) -> dict[str, Any]:
    """The front's point with the least second objective among those within `tolerance`
    (relative) of the best first objective; with one objective, the best."""
    first = min(row["objectives"][names[0]] for row in front)
    near = [row for row in front if row["objectives"][names[0]] <= first * (1 + tolerance)]
    if len(names) == 1:
        return min(near, key=lambda row: row["objectives"][names[0]])
    return min(near, key=lambda row: (row["objectives"][names[1]], row["objectives"][names[0]]))


def _study(ctx: Context, kind: str, base: dict[str, Any], objectives: tuple[str, ...],
           space_yaml: dict[str, Any] | None) -> dict[str, Any]:
    from hamnet_jax.search.space import SearchSpace
    from hamnet_jax.search.study import StudyRequest, run_search

    root = ctx.stage_dir(kind)
    resume = continue_or_clear(root, "study/study.json")
    pipeline = ctx.config.section("pipeline")
    space = SearchSpace.from_dict(space_yaml, f"pipeline.{kind}_space") if space_yaml else None
    request = StudyRequest(kind=kind, data=str(ctx.data), out=str(root / "study"), base=base, space=space,
                           objectives=objectives, min_epochs=pipeline.search_min_epochs, best_run=False,
                           # promotions independent of how the workers' trials interleave (a section
                           # naming hyperband or asha as its strategy keeps that scheduler)
                           default_scheduler="sha",
                           workers=pipeline.search_workers, fast_compile=pipeline.search_fast_compile,
                           seed=ctx.config.training.seed, resume=resume)
    report = run_search(request, ctx.config)
    names = [o.split(":")[0] for o in objectives]
    front = [row for row in report["pareto_front"] if all(row["objectives"].get(n) is not None for n in names)]
    if not front:
        raise InputError(f"pipeline {kind}: no trial of {request.out} finished at the full budget "
                         f"({report['failed']} failed); see its analysis.json")
    chosen = _pick(front, names, pipeline.accuracy_tolerance)
    return {"study": request.out, "chosen": {"trial": chosen["trial"], "config": chosen["config"],
                                             "objectives": chosen["objectives"]},
            "pareto_front": [{"trial": r["trial"], "objectives": r["objectives"], "config": r["config"]}
                             for r in report["pareto_front"]],
            "all": [{"trial": r["trial"], "budget": r["budget"],
                     "objectives": dict(zip(names, r["values"], strict=False))}
                    for r in report["all"] if r["feasible"]],  # every trial's result at each budget it reached
            "trials": report["trials"], "failed": report["failed"], "trial_epochs": report["trial_epochs"],
            "objectives": names, "full_budget": report["full_budget"]}


def stage_nas(ctx: Context, done: Done) -> dict[str, Any]:
    pipeline = ctx.config.section("pipeline")
    return _study(ctx, "nas", search_base(ctx.config), tuple(pipeline.nas_objectives), pipeline.nas_space)


def _architecture(done: Done) -> dict[str, Any]:
    return dict(done["nas"]["chosen"]["config"]) if "nas" in done else {}


def stage_hpo(ctx: Context, done: Done) -> dict[str, Any]:
    base = search_base(ctx.config)
    base["model"] = {**base["model"], **_architecture(done)}
    return _study(ctx, "hpo", base, ("val_mae",), ctx.config.section("pipeline").hpo_space)


def stage_train(ctx: Context, done: Done) -> dict[str, Any]:
    training = dict(done["hpo"]["chosen"]["config"]) if "hpo" in done else {}
    config = optimized_config(ctx.config, _architecture(done), training)
    row = "+ NAS" if "nas" in done else "+ HPO" if "hpo" in done else "+ Training Opt."
    return {**_train(ctx, config, ctx.stage_dir("train") / "run", row),
            "architecture": _architecture(done), "training": training}


def _distillation_config(ctx: Context, **override: Any) -> Any:
    """The `distillation:` section as given (the rest its defaults), with `override`."""
    from hamnet_jax.config import DistillationConfig

    section = ctx.config.section("distillation")
    return DistillationConfig(**{**{k: getattr(section, k) for k in ctx.config.given.get("distillation", ())},
                                 **override})


def stage_distill(ctx: Context, done: Done) -> dict[str, Any]:
    """The baseline teaches the searched model further (when NAS ran: the train stage's run,
    from its weights), else a fresh student `distillation.compression_ratio` its size."""
    from hamnet_jax.runs.distill import distill_run

    cfg = _distillation_config(ctx)
    student = done["train"]["run"] if "nas" in done else None
    run_dir = ctx.stage_dir("distill") / "run"
    resume = continue_or_clear(run_dir)
    summary = distill_run(done["baseline"]["run"], ctx.data, run_dir, cfg, None, None, resume, ctx.progress, student)
    return {**_model_result(run_dir, summary, "+ Knowledge Distill."), "teacher": done["baseline"]["run"],
            "student": f"the searched model ({student})" if student else f"{cfg.compression_ratio}x the teacher"}


def _compress(ctx: Context, done: Done, name: str, row: str, pruning: Any, quantization: Any) -> dict[str, Any]:
    from hamnet_jax.runs.compress import compress_run

    source = current_run(done)
    run_dir = ctx.stage_dir(name) / "run"
    resume = continue_or_clear(run_dir)
    summary = compress_run(source, ctx.data, run_dir, pruning, quantization, None, resume, ctx.progress)
    return {**_model_result(run_dir, summary, row), "source": str(source),
            "weights_file_bytes": summary["weights_file_bytes"]}


def _section_config(ctx: Context, cls: Any, name: str) -> Any:
    section = ctx.config.section(name)
    return cls.from_section({k: getattr(section, k) for k in ctx.config.given.get(name, ())})


def stage_prune(ctx: Context, done: Done) -> dict[str, Any]:
    """Prune the chain's model and fine-tune it (`pruning:`); then, with
    `pipeline.prune_teacher_epochs`, the baseline teaches the pruned model for that many
    epochs more (knowledge distillation, Hinton et al. 2015, as the distill stage does;
    structured pruning followed by distillation from the unpruned model is the recovery
    step of e.g. Sanh et al. 2020 and Xia et al. 2022). Measured on the quick preset's
    seed-0 chain (docs/measurements.md, "The pipeline, quick preset"): pruning 40% cost
    +4.6% test MAE against the baseline; three taught epochs (27 s) brought it to +0.19%."""
    from hamnet_jax.config import PruningConfig

    pruned = _compress(ctx, done, "prune", "+ Pruning", _section_config(ctx, PruningConfig, "pruning"), None)
    epochs = ctx.config.section("pipeline").prune_teacher_epochs
    if not epochs or "baseline" not in done:
        return pruned
    from hamnet_jax.runs.distill import distill_run

    run_dir = ctx.stage_dir("prune") / "taught"
    resume = continue_or_clear(run_dir)
    summary = distill_run(done["baseline"]["run"], ctx.data, run_dir, _distillation_config(ctx, epochs=epochs), None,
                          None, resume, ctx.progress, pruned["run"])
    return {**_model_result(run_dir, summary, "+ Pruning"), "source": pruned["source"],
            "pruned": {k: pruned[k] for k in ("run", "test", "weights_file_bytes")},
            "teacher": done["baseline"]["run"], "teacher_epochs": epochs}


def stage_quantize(ctx: Context, done: Done) -> dict[str, Any]:
    from hamnet_jax.config import QuantizationConfig

    q = _section_config(ctx, QuantizationConfig, "quantization")
    return _compress(ctx, done, "quantize", f"+ Quantization ({str(q.precision).upper()})", None, q)


def check_served_uncertainty(config: Config) -> None:
    """The pipeline serves and measures MC dropout (`served_mc_samples`; 0 = deterministic):
    an `inference.uncertainty` asking for anything else would go unheard, so it is refused."""
    given = config.section("inference").uncertainty
    if "uncertainty" in config.given.get("inference", ()) and given != "mc":
        raise InputError(f"inference.uncertainty: {given}: the pipeline serves and measures MC dropout "
                         "(inference.mc_samples, else the run's; 0 = deterministic); the distilled spread is "
                         "served by `hamnet serve` / `hamnet predict`, not yet by the pipeline's repository")


def served_mc_samples(ctx: Context) -> int:
    """MC-dropout samples of the served (and measured) model: `inference.mc_samples`, else the run's."""
    mc = ctx.config.section("inference").mc_samples
    return int(ctx.config.training.mc_samples if mc is None else mc)


def stage_export(ctx: Context, done: Done) -> dict[str, Any]:
    """The chain's model in every `pipeline.export_formats` format, taking raw inputs, with
    its parity against JAX on the test split (int8 static calibrates on the training split)."""
    from hamnet_jax.data.dataset import open_cohort, split_cohort
    from hamnet_jax.export.formats import export_format
    from hamnet_jax.inference.raw_model import RawModel
    from hamnet_jax.runs.run_dir import load_run

    run = load_run(current_run(done))
    raw = RawModel.from_run(run, served_mc_samples(ctx))
    out = ctx.stage_dir("export")
    out.mkdir(parents=True, exist_ok=True)
    # (through the run's cohort cache, as its training read the file)
    parts = split_cohort(open_cohort(ctx.data, run.schema, run.config.data), run.config.data)
    batch = max(ctx.config.section("benchmarking").batch_sizes)
    exports = []
    for fmt in ctx.config.section("pipeline").export_formats:
        path = out / f"model-{fmt}{'.plan' if fmt.startswith('tensorrt') else '.onnx'}"
        d = export_format(raw, path, fmt, True, parts["train"], parts["test"], max_batch=batch)
        exports.append({"format": fmt, "path": str(path), "precision": d["precision"], "bytes": int(d["bytes"]),
                        "parity": d.get("parity")})
    return {"run": str(run.path), "mc_samples": raw.num_samples, "exports": exports}


STAGE_FUNCTIONS: dict[str, Callable[[Context, Done], dict[str, Any]]] = {
    "baseline": stage_baseline, "nas": stage_nas, "hpo": stage_hpo, "train": stage_train,
    "distill": stage_distill, "prune": stage_prune, "quantize": stage_quantize, "export": stage_export,
}
