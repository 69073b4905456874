"""The models a benchmark measures, built from run directories: the rows of the original
documentation's "Model Optimization Results" table, each one optimization more than the
row above it.

    Baseline HAMNet        the run, JAX at fp32 (the framework's own predictor)
    + Pruning              a pruned run (`hamnet prune`), JAX
    + Quantization (INT8)  the model so far, ONNX Runtime dynamic int8
    + Knowledge Distill.   a distilled student (`hamnet distill`), ONNX Runtime dynamic int8
    + TensorRT Opt.        the model so far as a TensorRT fp16 engine (NVIDIA GPU only)

Rows whose run is not given are left out; the TensorRT row says why it is missing where
TensorRT or a GPU is absent. Size is what the model needs on disk: the compressed
checkpoint for JAX models (sparse pruned layers stored sparse), the file for ONNX graphs
and engines. Every model takes raw inputs and runs deterministically (no MC dropout), so
latencies compare the same work.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from hamnet_jax.config.sections import InferenceSection
from hamnet_jax.errors import InputError
from hamnet_jax.export.compressed_checkpoint import compressed_bytes
from hamnet_jax.export.formats import export_format
from hamnet_jax.inference.predictors import JaxPredictor, OnnxPredictor, Predictor
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.runs.run_dir import load_run

INT8 = "onnx-int8-dynamic"
ROWS = ("Baseline HAMNet", "+ Pruning", "+ Quantization (INT8)", "+ Knowledge Distill.", "+ TensorRT Opt.")


@dataclasses.dataclass
class BenchModel:
    """One model under test: a predictor of raw requests and what it costs to store."""

    name: str
    backend: str  # jax/fp32, onnxruntime/int8-dynamic, tensorrt/fp16
    predictor: Predictor
    size_bytes: int
    params: int
    raw: RawModel  # the run's model (spec, preprocessing, target scale)
    run_dir: Path
    graph: Path | None = None  # the exported file a server can load (ONNX) or None


def param_count(raw: RawModel) -> int:
    return int(sum(np.asarray(p).size for p in jax.tree_util.tree_leaves(raw.model.float_params())))


def jax_model(name: str, run_dir: Path, batch_sizes: tuple[int, ...], mc_samples: int = 0) -> BenchModel:
    """The run on JAX's predictor, `mc_samples` MC-dropout passes per request (0: deterministic)."""
    raw = RawModel.from_run(load_run(run_dir), mc_samples)
    m = raw.model
    return BenchModel(name, "jax/fp32" if m.mode is None else "jax/int8",  # (int8: a quantized run)
                      JaxPredictor(raw, batch_sizes), compressed_bytes(m.params, m.quant, m.bits),
                      param_count(raw), raw, run_dir)


def graph_model(name: str, like: BenchModel, path: Path, fmt: str, precision: str, size_bytes: int,
                batch_sizes: tuple[int, ...], options: InferenceSection | None = None) -> BenchModel:
    """`like`'s run as the exported file at `path` (an ONNX graph or a TensorRT engine),
    run with `options`' ONNX Runtime threads, graph optimization level and providers."""
    if fmt.startswith("tensorrt"):
        from hamnet_jax.inference.tensorrt_runtime import TensorRTPredictor

        predictor: Predictor = TensorRTPredictor(path, like.raw.spec, max(batch_sizes), None)
        backend = f"tensorrt/{precision}"
    else:
        o = options or InferenceSection()
        predictor = OnnxPredictor(path, like.raw.spec, o.intra_op_threads, o.inter_op_threads, o.optimization_level,
                                  o.execution_providers, max_batch=max(batch_sizes), buckets=batch_sizes)
        backend = f"onnxruntime/{precision}"
    return BenchModel(name, backend, predictor, int(size_bytes), like.params, like.raw, like.run_dir, path)


def exported_model(name: str, like: BenchModel, fmt: str, out: Path, batch_sizes: tuple[int, ...]) -> BenchModel:
    """`like`'s run exported to `fmt` (an ONNX precision or a TensorRT engine) under `out`."""
    path = out / f"{like.run_dir.name}-{fmt}{'.plan' if fmt.startswith('tensorrt') else '.onnx'}"
    description = export_format(like.raw, path, fmt, max_batch=max(batch_sizes))
    return graph_model(name, like, path, fmt, description["precision"], description["bytes"], batch_sizes)


def tensorrt_missing() -> str | None:
    """Why a TensorRT engine cannot be built here, or None when it can."""
    from hamnet_jax.inference.tensorrt_runtime import require_tensorrt

    try:
        require_tensorrt()
    except InputError as err:
        return str(err)
    return None


def optimization_models(run: Path, out: Path, batch_sizes: tuple[int, ...], pruned: Path | None = None,
                        distilled: Path | None = None, tensorrt: bool = True) -> tuple[list[BenchModel], dict]:
    """The table's models in order, and {row name: why it is absent} for rows left out."""
    out.mkdir(parents=True, exist_ok=True)
    models = [jax_model("Baseline HAMNet", run, batch_sizes)]
    absent: dict[str, str] = {}
    if pruned is not None:
        models.append(jax_model("+ Pruning", pruned, batch_sizes))
    else:
        absent["+ Pruning"] = "no pruned run given (--pruned RUN, made by `hamnet prune`)"
    models.append(exported_model("+ Quantization (INT8)", models[-1], INT8, out, batch_sizes))
    if distilled is not None:
        student = jax_model("student", distilled, batch_sizes)
        models.append(exported_model("+ Knowledge Distill.", student, INT8, out, batch_sizes))
    else:
        absent["+ Knowledge Distill."] = "no distilled run given (--distilled RUN, made by `hamnet distill`)"
    missing = tensorrt_missing() if tensorrt else "TensorRT left out (--no-tensorrt)"
    if missing is None:
        models.append(exported_model("+ TensorRT Opt.", models[-1], "tensorrt", out, batch_sizes))
    else:
        absent["+ TensorRT Opt."] = missing
    return models, absent
