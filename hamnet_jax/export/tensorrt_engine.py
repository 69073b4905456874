"""Build a TensorRT engine from an exported raw-input ONNX graph (GPU machines only).

The engine's precision is the graph's: build from an `onnx-fp16` export for fp16, from
a static `onnx-int8` export (QDQ, calibrated on the run's training split) for int8, so
TensorRT runs the types the graph states (a strongly typed network where this TensorRT
has them; older versions get the matching builder flag). One optimization profile
covers batch sizes 1..`max_batch` (optimized for `opt_batch`). The engine file is
written atomically, with `<file>.json` describing it.
"""

from __future__ import annotations

import os
from pathlib import Path

from hamnet_jax.errors import InputError
from hamnet_jax.inference.tensorrt_runtime import require_tensorrt
from hamnet_jax.io_atomic import write_atomic


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, precision: str,
                 max_batch: int = 256, opt_batch: int = 32, workspace_gib: float = 4.0) -> Path:
    trt, _ = require_tensorrt()
    if not 1 <= opt_batch <= max_batch:
        raise InputError(f"TensorRT profile: need 1 <= opt_batch ({opt_batch}) <= max_batch ({max_batch})")
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1,) + rest, (opt_batch,) + rest, (max_batch,) + rest)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise InputError(f"TensorRT could not build an engine from {onnx_path} ({precision})")
    out = Path(engine_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda f: f.write(bytes(serialized)), mode="wb")
    return out
