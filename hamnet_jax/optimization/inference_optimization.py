"""`HAMNetInferenceOptimizer`: the original framework's inference-optimization facade.

    from hamnet_jax.optimization.inference_optimization import (
        HAMNetInferenceOptimizer, InferenceBackend, InferenceOptimizationConfig)

    infer_config = InferenceOptimizationConfig(backend=InferenceBackend.ONNXRUNTIME, precision_mode="int8",
                                               batch_size=16, dynamic_batching=True, enable_caching=True)
    optimizer = HAMNetInferenceOptimizer(model_config, infer_config)
    paths = optimizer.optimize_model("runs/main/fp32", sample_input, "optimized_models")
    predictor = optimizer.load_optimized_model(paths["onnxruntime"], "onnxruntime")
    pipeline = optimizer.create_inference_pipeline("onnxruntime")   # cached, batched
    outputs = pipeline(raw_request)      # {"prediction": [B], "total_std": [B], ...}

`model` is a run directory (or a loaded `Run`); `sample_input` is a raw request
(inference/raw_inputs.py) that calibrates static int8. Thin: the work is in
`hamnet_jax.export` and `hamnet_jax.inference`.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from pathlib import Path

import numpy as np

from hamnet_jax.config.schema import build
from hamnet_jax.config.sections import InferenceSection
from hamnet_jax.config.strategies import PrecisionMode
from hamnet_jax.errors import InputError
from hamnet_jax.export.formats import export_format
from hamnet_jax.inference.factory import build_predictor
from hamnet_jax.inference.predictors import Predictor
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.runs.run_dir import Run, load_run

__all__ = ["HAMNetInferenceOptimizer", "InferenceBackend", "InferenceOptimizationConfig", "OptimizationLevel",
           "PrecisionMode"]


class InferenceBackend(enum.StrEnum):
    JAX = "jax"
    ONNXRUNTIME = "onnxruntime"
    ONNX = "onnxruntime"  # alias
    TENSORRT = "tensorrt"


class OptimizationLevel(enum.StrEnum):
    """ONNX Runtime's graph optimization levels."""

    DISABLE = "disable"
    BASIC = "basic"
    EXTENDED = "extended"
    ALL = "all"


# fields that change how a model executes, not what it is (ignored when comparing architectures)
EXECUTION_FIELDS = ("dtype", "attention", "attention_block_size", "remat_policy", "remat_blocks")


@dataclasses.dataclass
class InferenceOptimizationConfig:
    """The `inference:` config section's keys that shape a predictor (config/sections.py
    InferenceSection; the server's batcher keys belong to `hamnet serve`), with
    `raw_inputs` (exported graphs take the data file's values) and the calibration method
    of static int8."""

    backend: InferenceBackend | str = InferenceBackend.JAX
    precision_mode: PrecisionMode | str = PrecisionMode.FP32
    batch_size: int = 64
    dynamic_batching: bool = True
    enable_caching: bool = False
    cache_size: int = 10_000
    uncertainty: str = "auto"  # auto / distilled / mc (inference/raw_model.py)
    mc_samples: int | None = None
    optimization_level: OptimizationLevel | str = OptimizationLevel.ALL
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    execution_providers: tuple[str, ...] = ("cpu",)
    raw_inputs: bool = True
    calibration_method: str = "minmax"

    def section(self) -> InferenceSection:
        """Validated as the config file's `inference:` section (errors name the key)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(InferenceSection) if hasattr(self, f.name)}
        values["backend"] = str(InferenceBackend(self.backend) if self.backend in list(InferenceBackend)
                                else self.backend)
        values["precision_mode"] = str(self.precision_mode.value if isinstance(self.precision_mode, PrecisionMode)
                                       else self.precision_mode)
        values["optimization_level"] = str(self.optimization_level)
        values["execution_providers"] = tuple(self.execution_providers)
        return build(InferenceSection, values)


FORMAT_OF = {("onnxruntime", "fp32"): "onnx", ("onnxruntime", "fp16"): "onnx-fp16",
             ("onnxruntime", "int8"): "onnx-int8", ("onnxruntime", "int8-dynamic"): "onnx-int8-dynamic",
             ("tensorrt", "fp16"): "tensorrt", ("tensorrt", "int8"): "tensorrt-int8"}


class HAMNetInferenceOptimizer:
    def __init__(self, model_config: HAMNetConfig | None = None,
                 config: InferenceOptimizationConfig | None = None) -> None:
        self.model_config = model_config
        self.config = config or InferenceOptimizationConfig()
        self.options = self.config.section()
        self.raw: RawModel | None = None
        self.paths: dict[str, Path] = {}

    def _load(self, model: Run | str | os.PathLike) -> RawModel:
        run = model if isinstance(model, Run) else load_run(model)
        if self.model_config is not None:
            given, trained = (
                {k: v for k, v in c.to_dict().items() if k not in EXECUTION_FIELDS}
                for c in (self.model_config, run.model_config))
            differ = sorted(k for k in given if given[k] != trained.get(k))
            if differ:
                raise InputError(f"model_config does not describe the run at {run.path}: {differ} differ")
        return RawModel.from_options(run, self.options)

    def optimize_model(self, model: Run | str | os.PathLike, sample_input: dict[str, np.ndarray] | None = None,
                       output_dir: str | os.PathLike = "optimized_models") -> dict[str, Path]:
        """Export the run for the configured backend and precision; returns
        {backend: path}. The JAX backend needs no file ({})."""
        self.raw = self._load(model)
        backend, precision = self.options.backend, self.options.precision_mode
        if backend == "jax":
            build_predictor(self.raw, self.options)  # checks the precision applies to this run
            self.paths = {}
            return {}
        fmt = FORMAT_OF.get((backend, precision))
        if fmt is None:
            raise InputError(f"inference.precision_mode {precision} has no {backend} export; "
                             f"{backend} takes {sorted(p for b, p in FORMAT_OF if b == backend)}")
        out = Path(output_dir) / ("hamnet.onnx" if backend == "onnxruntime" else "hamnet.engine")
        raw_inputs = self.config.raw_inputs or backend == "tensorrt"
        export_format(self.raw, out, fmt, raw_inputs, sample_input, None, self.config.calibration_method,
                      self.options.batch_size)
        self.paths = {backend: out}
        return dict(self.paths)

    def load_optimized_model(self, path: str | os.PathLike | None, backend: str,
                             model: Run | str | os.PathLike | None = None) -> Predictor:
        """A predictor over an optimized model (the run of `optimize_model`, or `model`)."""
        if model is not None:
            self.raw = self._load(model)
        if self.raw is None:
            raise InputError("load_optimized_model needs the run: call optimize_model first or pass model=")
        options = dataclasses.replace(self.options, backend=str(InferenceBackend(backend)), enable_caching=False)
        return build_predictor(self.raw, options, path)

    def create_inference_pipeline(self, backend: str | None = None) -> Predictor:
        """A callable predictor (`pipeline(raw_request) -> outputs`) with the configured
        batching and, with `enable_caching`, the per-subject result cache."""
        if self.raw is None:
            raise InputError("create_inference_pipeline needs optimize_model first")
        backend = str(InferenceBackend(backend or self.options.backend))
        if backend != "jax" and backend not in self.paths:
            made = sorted(self.paths) or "none"
            raise InputError(f"no {backend} model was optimized; optimize_model produced {made}")
        return build_predictor(self.raw, dataclasses.replace(self.options, backend=backend), self.paths.get(backend))
