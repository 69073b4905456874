"""`build_predictor`: the `Predictor` an `inference` config section describes.

* `jax`          the run's own model (`RawModel`); `precision_mode` fp16 / bf16 sets a
                 float run's compute dtype, int8 needs a quantized run (`hamnet
                 quantize`), fp32 runs the run as it is;
* `onnxruntime`  an exported raw-input graph (`model_path`), whose precision must be the
                 one asked for (read from the export's `<file>.json`);
* `tensorrt`     an engine built by `hamnet export --format tensorrt`.

`batch_size` is the largest batch a call runs at once; `dynamic_batching` pads each call
to the next power-of-two bucket (else always to `batch_size`; ONNX Runtime and TensorRT
run any size up to `batch_size` with dynamic batching, unpadded); `enable_caching` puts the
per-subject LRU cache (`cache_size` subjects) in front.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from hamnet_jax.config.sections import InferenceSection
from hamnet_jax.errors import InputError
from hamnet_jax.inference.compressed import CompressedModel
from hamnet_jax.inference.predictors import JaxPredictor, OnnxPredictor, Predictor
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.inference.result_cache import CachedPredictor

HALF_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


def batch_buckets(batch_size: int, dynamic: bool) -> tuple[int, ...]:
    """Powers of two below `batch_size`, then `batch_size` (dynamic); else `batch_size` alone."""
    if not dynamic:
        return (batch_size,)
    sizes = {1 << i for i in range(batch_size.bit_length())}
    return tuple(sorted({s for s in sizes if s < batch_size} | {batch_size}))


def jax_model_at(raw: RawModel, precision: str) -> RawModel:
    model = raw.model
    if precision == "int8" and model.mode is None:
        raise InputError("inference.precision_mode int8 on the jax backend runs a quantized run; this run is float "
                         "(make one with `hamnet quantize`, or export --format onnx-int8)")
    if precision == "int8-dynamic":
        raise InputError("inference.precision_mode int8-dynamic is an ONNX Runtime precision; use the onnxruntime "
                         "backend or a run quantized with `hamnet quantize --mode dynamic`")
    if precision in HALF_DTYPES:
        if model.mode is not None:
            raise InputError(f"inference.precision_mode {precision}: this run is int8 ({model.mode}); it runs as it is")
        model = CompressedModel(model.config.replace(dtype=HALF_DTYPES[precision]), model.params)
    return dataclasses.replace(raw, model=model)


def build_predictor(raw: RawModel, options: InferenceSection, model_path: str | os.PathLike | None = None) -> Predictor:
    """`raw` is the run's `RawModel` (`RawModel.from_options(run, options)`); `options.mc_samples`
    (when set) redraws the JAX model's masks, and it and `options.uncertainty` must match an
    exported graph's."""
    buckets = batch_buckets(options.batch_size, options.dynamic_batching)
    if options.backend == "jax":
        if options.mc_samples is not None:
            raw = raw.with_mc_samples(options.mc_samples, raw.seed)
        predictor: Predictor = JaxPredictor(jax_model_at(raw, options.precision_mode), buckets, options.batch_size)
    else:
        if model_path is None:
            kind = "an exported .onnx file" if options.backend == "onnxruntime" else "a TensorRT engine"
            raise InputError(f"inference.backend {options.backend} needs {kind} (--model)")
        check_export(model_path, options)
        pad = None if options.dynamic_batching else buckets  # with dynamic batching both run any size
        if options.backend == "onnxruntime":
            fixed = (options.fixed_batch_sessions or None) if options.dynamic_batching else buckets
            predictor = OnnxPredictor(model_path, raw.spec, options.intra_op_threads, options.inter_op_threads,
                                      options.optimization_level, options.execution_providers,
                                      max_batch=options.batch_size, buckets=pad, fixed_batches=fixed)
        else:
            from hamnet_jax.inference.tensorrt_runtime import TensorRTPredictor

            predictor = TensorRTPredictor(model_path, raw.spec, options.batch_size, pad)
    return CachedPredictor(predictor, options.cache_size) if options.enable_caching else predictor


def sidecar(path: str | os.PathLike) -> Path:
    """Where an export's description and parity are stored: `<file>.json`."""
    return Path(f"{path}.json")


def check_export(model_path: str | os.PathLike, options: InferenceSection) -> None:
    """The export's stored precision and MC samples (`<file>.json`) match the options."""
    side = sidecar(model_path)
    if not side.exists():
        return
    stored = json.loads(side.read_text())
    if stored.get("precision") != options.precision_mode:
        raise InputError(f"{model_path} was exported at {stored.get('precision')}, but inference.precision_mode is "
                         f"{options.precision_mode}")
    if options.mc_samples is not None and stored.get("mc_samples") != options.mc_samples:
        raise InputError(f"{model_path} was exported with {stored.get('mc_samples')} MC samples, but "
                         f"inference.mc_samples is {options.mc_samples}")
    exported = stored.get("uncertainty", "mc" if stored.get("mc_samples") else "none")  # (exports before: no key)
    if options.uncertainty != "auto" and exported != options.uncertainty:
        raise InputError(f"{model_path} was exported with uncertainty {exported}, but inference.uncertainty is "
                         f"{options.uncertainty}")
