"""Precision passes over the model part of an exported graph, through ONNX Runtime's tools.

* `fp16`         onnxruntime.transformers' float16 converter (jax2onnx's own half
                 graphs do not load in ONNX Runtime); inputs and outputs stay float32.
* `int8`         static QDQ quantization (`quantize_static`): per-channel int8 weights,
                 uint8 activations (U8S8, ONNX Runtime's CPU format; its extended graph
                 optimizer rejects the S8S8 QDQ graph at opset 23) with ranges calibrated
                 on batches of the run's training split (min-max, percentile or entropy).
* `int8-dynamic` dynamic quantization (`quantize_dynamic`): int8 weights, activation
                 ranges computed per call; needs no calibration data.

Only the model part changes: preprocessing and the MC statistics stay float32.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hamnet_jax.errors import InputError
from hamnet_jax.export.onnx_graph import library_logs_below

PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
QUANTIZED_OPS = ["MatMul", "Gemm"]  # the projections; the rest of the graph stays float


def to_precision(model: Any, precision: str, calibration: Iterable[dict[str, np.ndarray]] | None = None,
                 method: str = "minmax") -> Any:
    """The model part (an onnx ModelProto) at `precision`; `calibration` yields input
    feeds (name -> array) for static int8."""
    if precision not in PRECISIONS:
        raise InputError(f"precision: unknown value {precision!r}; expected one of {list(PRECISIONS)}")
    if precision == "fp32":
        return model
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        with library_logs_below():
            return toposorted(convert_float_to_float16(model, keep_io_types=True))
    if precision == "int8" and calibration is None:
        raise InputError("precision int8 (static) needs calibration batches from the run's training split "
                         "(hamnet export --data FILE), or use int8-dynamic")
    if method not in CALIBRATION_METHODS:
        raise InputError(f"calibration method: unknown value {method!r}; expected one of {list(CALIBRATION_METHODS)}")
    return _quantize(model, precision, calibration, method)


def _quantize(model: Any, precision: str, calibration: Iterable[dict] | None, method: str) -> Any:
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, feeds: Iterable[dict]) -> None:
            self._it: Iterator[dict] = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp, library_logs_below():
        src, prepared, out = Path(tmp, "model.onnx"), Path(tmp, "prepared.onnx"), Path(tmp, "int8.onnx")
        onnx.save(model, src)
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        if precision == "int8-dynamic":
            quantize_dynamic(prepared, out, op_types_to_quantize=QUANTIZED_OPS, per_channel=True,
                             weight_type=QuantType.QInt8)
        else:
            calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                         "entropy": CalibrationMethod.Entropy}[method]
            quantize_static(prepared, out, Reader(calibration), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=QUANTIZED_OPS, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=calibrate)
        return onnx.load(out)


def toposorted(model: Any) -> Any:
    """The model with its graph's nodes in topological order (the float16 converter
    appends the input casts last, which `onnx.checker` and graph merging reject)."""
    graph = model.graph
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = [n for n in pending if not all(i in ready for i in n.input)]
        done = [n for n in pending if all(i in ready for i in n.input)]
        if not done:
            raise InputError(f"ONNX graph has a cycle or a dangling input at node {rest[0].name!r}")
        for n in done:
            ready.update(n.output)
        ordered += done
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
    return model
