"""ONNX export of a trained run through jax2onnx: fp32, symbolic batch dimension "B".

The exported graph takes the standardized batch arrays (inputs named below, V visit
slots fixed at the run's `max_visits`) and returns `mean` and `log_var` in target units.
Known: jax2onnx's fp16/bf16 graphs do not load in ONNX Runtime, so export is fp32 only:
a run trained or quantized to fp16 / bf16 is cast to float32 before tracing
(`float32_model`), and convert afterwards with onnxruntime's float16 converter when an fp16
graph is wanted. An int8 run exports its dequantized weights (what its weight-only
execution computes with); int8 operators in the graph are the inference-optimization
export's job.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hamnet_jax.data.batch import Batch, random_batch
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import MODALITIES, HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet

INPUT_NAMES: tuple[str, ...] = tuple(
    n for m in MODALITIES for n in (m, f"{m}_mask")
) + ("categorical", "modality_mask", "visit_mask", "visit_times")
OUTPUT_NAMES = ("mean", "log_var")


def batch_to_arrays(batch: Batch) -> list[np.ndarray]:
    """A Batch as the exported graph's positional inputs, in `INPUT_NAMES` order."""
    arrays = [a for m in MODALITIES for a in (batch.inputs[m], batch.feature_masks[m])]
    return [np.asarray(a) for a in arrays + [batch.categorical, batch.modality_mask, batch.visit_mask,
                                             batch.visit_times]]


def inference_fn(config: HAMNetConfig, params: Any, target_mean: float, target_std: float) -> Callable:
    """f(*arrays in INPUT_NAMES order) -> (mean, log_var) in target units, deterministic."""
    model = HAMNet(config)
    log_scale = 2.0 * math.log(target_std)

    def fn(*arrays: jax.Array) -> tuple[jax.Array, jax.Array]:
        named = dict(zip(INPUT_NAMES, arrays, strict=True))
        b = named["visit_mask"].shape[0]
        batch = Batch(
            inputs={m: named[m] for m in MODALITIES},
            feature_masks={m: named[f"{m}_mask"] for m in MODALITIES},
            categorical=named["categorical"], modality_mask=named["modality_mask"],
            visit_mask=named["visit_mask"], visit_times=named["visit_times"],
            targets=jnp.zeros((b,), jnp.float32), labels=jnp.zeros((b,), jnp.float32),
        )
        out, _ = model.apply({"params": params}, batch, deterministic=True)
        return out["mean"] * target_std + target_mean, out["log_var"] + log_scale

    return fn


def float32_model(config: HAMNetConfig, params: Any) -> tuple[HAMNetConfig, Any]:
    """The same model computing and storing in float32 (what jax2onnx exports loadably)."""
    return config.replace(dtype="float32"), jax.tree_util.tree_map(lambda p: np.asarray(p, np.float32), params)


def export_onnx(config: HAMNetConfig, params: Any, target_mean: float, target_std: float,
                num_visits: int, out_path: str | os.PathLike) -> Path:
    """Trace the deterministic inference function into an fp32 ONNX file (atomic write);
    half-precision configs and params are cast to float32 first."""
    config, params = float32_model(config, params)
    try:
        from jax2onnx import to_onnx
    except ImportError:
        raise InputError("ONNX export needs jax2onnx: pip install 'hamnet-jax[export]'") from None
    example = batch_to_arrays(random_batch(config, 1, num_visits))
    specs = [jax.ShapeDtypeStruct(("B",) + a.shape[1:], a.dtype) for a in example]
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    to_onnx(inference_fn(config, params, target_mean, target_std), specs, model_name="hamnet",
            return_mode="file", output_path=str(tmp), input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES))
    os.replace(tmp, out)
    return out


def onnx_parity(onnx_path: str | os.PathLike, config: HAMNetConfig, params: Any, target_mean: float,
                target_std: float, num_visits: int, batch_sizes: tuple[int, ...] = (1, 64),
                seed: int = 0) -> dict[int, dict[str, float]]:
    """Max |ONNX Runtime - JAX| of mean and log_var on random batches with random masks
    (JAX side: the float32 model that was exported)."""
    import onnxruntime as ort

    config, params = float32_model(config, params)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    fn = jax.jit(inference_fn(config, params, target_mean, target_std))
    result = {}
    for bs in batch_sizes:
        arrays = batch_to_arrays(random_batch(config, bs, num_visits, seed=seed + bs))
        got = sess.run(list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, arrays, strict=True)))
        want = [np.asarray(x) for x in fn(*arrays)]
        result[bs] = {name: float(np.abs(g - w).max()) for name, g, w in zip(OUTPUT_NAMES, got, want, strict=True)}
    return result
