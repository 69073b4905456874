"""The original framework's headline entry points, over `hamnet_jax.pipeline`.

    from hamnet_jax.optimization import create_comprehensive_optimizer, optimize_hamnet_pipeline

    optimizers = create_comprehensive_optimizer(model_config, enable_nas=True, enable_pruning=True, ...)
    print(f"Created {len(optimizers)} optimizers")

    results = optimize_hamnet_pipeline(model=model_config, train_loader="cohort.parquet",
                                       optimization_config={"enable_nas": True, "enable_pruning": True, ...},
                                       out="runs/pipeline", preset="quick")
    optimized_model = results["optimized_model"]     # the served model's predictor (.predict(raw))
    optimization_summary = results["summary"]        # speed-up, MAE change, stage times, repository

The original's loaders are a data file here: the pipeline splits it itself (the `data:`
section's seeded split), so every stage, run and report refers to the same subjects; with
no file, the preset's built-in synthetic cohort is drawn.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hamnet_jax.config import Config, DistillationConfig, PruningConfig, QuantizationConfig, load_config
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.pipeline import run_pipeline

SWITCHES = ("enable_nas", "enable_hyperparameter_opt", "enable_pruning", "enable_distillation",
            "enable_regularization", "enable_training_opt", "enable_inference_opt", "enable_monitoring",
            "enable_benchmarking")
# decided by the data, not by the model the caller passes
DATA_FIELDS = ("clinical_dim", "imaging_dim", "genetic_dim", "lifestyle_dim", "lifestyle_cardinalities", "regression",
               "classification", "subject_level")


def _model_section(model: Any) -> dict[str, Any]:
    """The `model:` section of a HAMNetConfig, a HAMNet module, a tier name or a mapping."""
    config = getattr(model, "config", model)
    if config is None:
        return {}
    if isinstance(config, str):
        return {"tier": config}
    if isinstance(config, HAMNetConfig):
        return {k: v for k, v in config.to_dict().items() if k not in DATA_FIELDS}
    if isinstance(config, Mapping):
        return dict(config)
    raise InputError(f"model: expected a HAMNetConfig, a HAMNet module, a tier name or a mapping, got "
                     f"{type(model).__name__}")


def _data_file(train_loader: Any, val_loader: Any, test_loader: Any, data: Any) -> str | None:
    given = data if data is not None else train_loader
    if given is not None and not isinstance(given, (str, os.PathLike)):
        raise InputError(f"train_loader: the pipeline reads a data file (.parquet, .csv or .npz) and splits it "
                         f"itself; got {type(given).__name__}")
    for name, loader in (("val_loader", val_loader), ("test_loader", test_loader)):
        if loader is not None and (given is None or Path(loader) != Path(given)):
            raise InputError(f"{name}: the pipeline takes its validation and test subjects from the data file's "
                             "own seeded split (the data: section's fractions); pass the file as train_loader and "
                             f"leave {name} out")
    return str(given) if given is not None else None


def _switches(optimization_config: Mapping[str, Any] | None) -> dict[str, bool]:
    switches = dict(optimization_config or {})
    unknown = sorted(set(switches) - set(SWITCHES) - {"enable_quantization"})
    if unknown:
        raise InputError(f"optimization_config: unknown keys {unknown}; expected some of {list(SWITCHES)} "
                         "(and enable_quantization)")
    return switches


@dataclasses.dataclass
class OptimizedModel:
    """The pipeline's served model: its run, exported graph and inference options; `predict`
    answers raw requests ({input: array}, NaN = missing) as the server does."""

    run_dir: Path
    graph: Path | None
    options: dict[str, Any]

    @functools.cached_property
    def predictor(self) -> Any:
        from hamnet_jax.config.sections import InferenceSection
        from hamnet_jax.inference.factory import build_predictor
        from hamnet_jax.inference.raw_model import RawModel
        from hamnet_jax.runs.run_dir import load_run

        options = InferenceSection(**self.options)
        return build_predictor(RawModel.from_options(load_run(self.run_dir), options), options, self.graph)

    def predict(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return self.predictor.predict(dict(request))


def optimize_hamnet_pipeline(model: Any = None, train_loader: Any = None, val_loader: Any = None,
                             test_loader: Any = None, optimization_config: Mapping[str, Any] | None = None, *,
                             data: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                             config: str | os.PathLike | None = None, preset: str | None = None,
                             progress: bool = False) -> dict[str, Any]:
    """Run (or continue) the pipeline; returns its results with `optimized_model` (an
    `OptimizedModel`) and `summary`. `optimization_config` holds the `optimization:`
    switches; `model` the baseline's architecture (over `config`'s `model:` section)."""
    sections: dict[str, Any] = {}
    switches = _switches(optimization_config)
    if switches:
        sections["optimization"] = switches
    model_section = _model_section(model)
    if model_section:
        sections["model"] = model_section
    results = run_pipeline(out, _data_file(train_loader, val_loader, test_loader, data), config, preset,
                           progress=progress, overrides=sections)
    stages = results["stages"]
    repo = stages["repository"]
    results["optimized_model"] = OptimizedModel(Path(repo["run"]), Path(repo["graph"]) if repo["graph"] else None,
                                                repo["options"])
    return results


def _run_config(config: Config | str | os.PathLike | None) -> Config:
    return config if isinstance(config, Config) else load_config(config)


def create_comprehensive_optimizer(model_config: HAMNetConfig, enable_nas: bool = False,
                                   enable_hyperparameter_opt: bool = False, enable_pruning: bool = False,
                                   enable_distillation: bool = False, enable_regularization: bool = False,
                                   enable_training_opt: bool = False, enable_inference_opt: bool = False,
                                   enable_monitoring: bool = False, enable_benchmarking: bool = False,
                                   config: Config | str | os.PathLike | None = None) -> dict[str, Any]:
    """The original facade of each switched-on optimization, configured from `config`'s
    sections (a Config, a YAML path, or the defaults). Two need what only a trained model
    has, so they come as constructors awaiting it: `distillation(teacher=(config, params))`
    and `benchmarking(model=run_dir)`."""
    from hamnet_jax.optimization.benchmarking import HAMNetBenchmarkSuite
    from hamnet_jax.optimization.hyperparameter_optimization import HAMNetHyperparameterOptimizer
    from hamnet_jax.optimization.inference_optimization import HAMNetInferenceOptimizer, InferenceOptimizationConfig
    from hamnet_jax.optimization.knowledge_distillation import HAMNetKnowledgeDistillation
    from hamnet_jax.optimization.monitoring import HAMNetMonitoring
    from hamnet_jax.optimization.nas import HAMNetNAS
    from hamnet_jax.optimization.pruning_quantization import HAMNetOptimizer
    from hamnet_jax.optimization.regularization import HAMNetRegularizer
    from hamnet_jax.optimization.training_optimization import HAMNetTrainingOptimizer, TrainingOptimizationConfig
    from hamnet_jax.runs.train import regularization_config

    if not isinstance(model_config, HAMNetConfig):
        raise InputError(f"model_config: expected a HAMNetConfig, got {type(model_config).__name__}")
    run_config = _run_config(config)

    def given(name: str) -> dict[str, Any]:
        section = run_config.section(name)
        return {k: getattr(section, k) for k in run_config.given.get(name, ())}

    def inference() -> InferenceOptimizationConfig:
        section = run_config.section("inference")
        return InferenceOptimizationConfig(**{f.name: getattr(section, f.name)
                                              for f in dataclasses.fields(InferenceOptimizationConfig)
                                              if hasattr(section, f.name)})

    makers = {
        "nas": (enable_nas, lambda: HAMNetNAS(run_config.section("nas"))),
        "hyperparameter_opt": (enable_hyperparameter_opt, lambda: HAMNetHyperparameterOptimizer(
            run_config.section("hyperparameter_optimization"), model=model_config)),
        "pruning": (enable_pruning, lambda: HAMNetOptimizer(PruningConfig.from_section(given("pruning")),
                                                            QuantizationConfig.from_section(given("quantization")))),
        "distillation": (enable_distillation, lambda: functools.partial(
            HAMNetKnowledgeDistillation, config=DistillationConfig(**given("distillation")))),
        "regularization": (enable_regularization, lambda: HAMNetRegularizer(
            regularization_config(run_config) if "regularization" in run_config.sections else None)),
        "training_opt": (enable_training_opt, lambda: HAMNetTrainingOptimizer(
            model_config, TrainingOptimizationConfig.from_training_config(run_config.training))),
        "inference_opt": (enable_inference_opt, lambda: HAMNetInferenceOptimizer(model_config, inference())),
        "monitoring": (enable_monitoring, lambda: HAMNetMonitoring(run_config.section("monitoring"))),
        "benchmarking": (enable_benchmarking, lambda: functools.partial(
            HAMNetBenchmarkSuite, config=run_config.section("benchmarking"))),
    }
    return {name: make() for name, (on, make) in makers.items() if on}
