"""TensorRT engines as `Predictor`s (GPU only; the `tensorrt` and `cupy` packages).

An engine (export/tensorrt_engine.py) takes the raw inputs with a dynamic batch
dimension inside its optimization profile; requests above the profile's largest batch
(or `max_batch`) run in chunks. Inputs and outputs live in CuPy device arrays; execution is
`execute_async_v3` on one CUDA stream. Where TensorRT, CuPy or a GPU is missing,
`require_tensorrt` raises a one-line `InputError` naming what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hamnet_jax.errors import InputError
from hamnet_jax.inference.predictors import Predictor, checked_buckets
from hamnet_jax.inference.raw_inputs import RawInputSpec


def require_tensorrt() -> tuple[Any, Any]:
    """(tensorrt, cupy) modules with a visible GPU, or an InputError naming what is missing."""
    missing = []
    try:
        import tensorrt as trt
    except ImportError:
        trt = None
        missing.append("the tensorrt package (pip install tensorrt)")
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            missing.append("an NVIDIA GPU")
    except ImportError:
        cupy = None
        missing.append("the cupy package (pip install cupy-cuda12x)")
    except Exception as err:  # CUDA driver or runtime absent
        cupy = None
        missing.append(f"a working CUDA device ({type(err).__name__}: {err})")
    if missing:
        raise InputError(f"the TensorRT backend needs {', '.join(missing)}; not found here")
    return trt, cupy


class TensorRTPredictor(Predictor):
    def __init__(self, engine_path: str | os.PathLike, spec: RawInputSpec, max_batch: int | None = None,
                 buckets: Sequence[int] | None = None) -> None:
        trt, self._cupy = require_tensorrt()
        if not Path(engine_path).is_file():
            raise InputError(f"TensorRT engine {engine_path} does not exist")
        self._logger = trt.Logger(trt.Logger.ERROR)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise InputError(f"TensorRT could not load {engine_path} (built by another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = tuple(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        if inputs != spec.names:
            raise InputError(f"engine {engine_path} takes inputs {list(inputs)}, not the run's raw inputs "
                             f"{list(spec.names)}: build it from a raw-input export")
        self.spec = spec
        self.output_names = tuple(n for n in names if n not in inputs)
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        profile_max = int(self.engine.get_tensor_profile_shape(inputs[0], 0)[2][0])
        if max_batch is not None and max_batch > profile_max:
            raise InputError(f"max_batch {max_batch} exceeds the engine's profile (batch <= {profile_max})")
        self.max_batch = int(max_batch or profile_max)
        self.buckets = checked_buckets(buckets, self.max_batch)
        self._stream = self._cupy.cuda.Stream(non_blocking=True)

    def run_batch(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cp, ctx = self._cupy, self.context
        keep = []
        with self._stream:
            for name in self.spec.names:
                device = cp.asarray(np.ascontiguousarray(arrays[name], self._dtypes[name]))
                ctx.set_input_shape(name, device.shape)
                ctx.set_tensor_address(name, device.data.ptr)
                keep.append(device)
            outputs = {}
            for name in self.output_names:
                outputs[name] = cp.empty(tuple(ctx.get_tensor_shape(name)), self._dtypes[name])
                ctx.set_tensor_address(name, outputs[name].data.ptr)
            if not ctx.execute_async_v3(self._stream.ptr):
                raise RuntimeError("TensorRT execution failed")
            self._stream.synchronize()
        return {k: cp.asnumpy(v).astype(np.float32) for k, v in outputs.items()}
