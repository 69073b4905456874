"""`export_format`: one entry point for every export format of a run.

| format              | file                                   | precision                 |
|---------------------|----------------------------------------|---------------------------|
| `onnx`              | ONNX                                   | fp32                      |
| `onnx-fp16`         | ONNX (ORT float16 converter)           | fp16, fp32 I/O            |
| `onnx-int8`         | ONNX, static QDQ (training-split calib) | int8 weights, u8 activations |
| `onnx-int8-dynamic` | ONNX, dynamic quantization             | int8 weights              |
| `tensorrt`          | TensorRT engine (from the fp16 ONNX)   | fp16                      |
| `tensorrt-int8`     | TensorRT engine (from the int8 QDQ ONNX) | int8                    |

TensorRT engines take the raw inputs and are built where `tensorrt`, CuPy and a GPU are
present (the ONNX they are built from is kept beside them as `<engine>.onnx`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hamnet_jax.data.arrays import CohortArrays
from hamnet_jax.data.cohort_cache import CachedCohort
from hamnet_jax.errors import InputError
from hamnet_jax.export.onnx_export import EXPORT_STEPS, export_run_onnx
from hamnet_jax.inference.factory import sidecar
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.io_atomic import write_json_atomic

FORMATS: dict[str, str] = {"onnx": "fp32", "onnx-fp16": "fp16", "onnx-int8": "int8",
                           "onnx-int8-dynamic": "int8-dynamic", "tensorrt": "fp16", "tensorrt-int8": "int8"}


def steps(fmt: str) -> int:
    """How many steps `export_format` reports for `fmt`."""
    return len(EXPORT_STEPS) + fmt.startswith("tensorrt")


def export_format(raw: RawModel, out: str | os.PathLike, fmt: str = "onnx", raw_inputs: bool = True,
                  train: CohortArrays | CachedCohort | Mapping[str, np.ndarray] | None = None,
                  test: CohortArrays | CachedCohort | None = None, calibration_method: str = "minmax",
                  max_batch: int = 256, on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write `out` in `fmt`; returns (and stores in `<out>.json`) its description:
    precision, inputs, outputs, size, and parity against the float32 JAX model;
    `on_step(name)` is told as each step begins (`steps(fmt)` of them)."""
    if fmt not in FORMATS:
        raise InputError(f"--format: unknown format {fmt!r}; expected one of {list(FORMATS)}")
    precision = FORMATS[fmt]
    if precision == "int8" and train is None:
        raise InputError(f"--format {fmt} calibrates on the run's training split: give the run's data (--data)")
    if not fmt.startswith("tensorrt"):
        return export_run_onnx(raw, out, precision, raw_inputs, train, test, calibration_method, on_step).to_dict()
    from hamnet_jax.export.tensorrt_engine import build_engine
    from hamnet_jax.inference.tensorrt_runtime import require_tensorrt

    require_tensorrt()  # before spending time on the ONNX export
    onnx_path = Path(f"{out}.onnx")
    onnx_part = export_run_onnx(raw, onnx_path, precision, True, train, test, calibration_method, on_step)
    if on_step is not None:
        on_step("build the TensorRT engine")
    engine = build_engine(onnx_path, out, precision, max_batch=max_batch, opt_batch=min(32, max_batch))
    description = {**onnx_part.to_dict(), "path": str(engine), "format": fmt, "onnx": str(onnx_path),
                   "bytes": engine.stat().st_size, "max_batch": max_batch}
    write_json_atomic(sidecar(engine), description)
    return description
