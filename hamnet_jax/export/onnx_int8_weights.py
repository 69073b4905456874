"""A quantized run's own int8 weights inside its exported graph.

jax2onnx traces the float32 model, so a quantized run's graph first holds its
dequantized kernels (`codes * scale`, exactly). `embed_int8_weights` finds each of those
initializers by its bytes and stores the run's int8 codes and per-channel scales in its
place, recomputed in the graph as `Cast(codes) * scale`: the file carries the int8
weights the run was quantized to, and ONNX Runtime folds the product once at session
start, so the graph computes what the run's weight-only execution computes (activations
stay float: ONNX Runtime's own activation quantization is `--format onnx-int8` /
`onnx-int8-dynamic`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from hamnet_jax.inference.compressed import CompressedModel


def quantized_kernels(model: CompressedModel) -> list[tuple[np.ndarray, np.ndarray]]:
    """(int8 codes, scale) of every quantized weight of `model` (none for a float model)."""
    pairs: list[tuple[np.ndarray, np.ndarray]] = []

    def visit(params: Any, scales: Any) -> None:
        for name, value in params.items():
            if hasattr(value, "items"):
                visit(value, (scales or {}).get(name))
            elif scales is not None and f"{name}_scale" in scales:
                pairs.append((np.asarray(value), np.asarray(scales[f"{name}_scale"], np.float32)))

    if model.quant is not None:
        visit(model.params, model.quant)
    return pairs


def _digest(array: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(array, np.float32).tobytes(), digest_size=16).digest()


def _smallest_scale(scale: np.ndarray, kernel_shape: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """The scale broadcast to the kernel, laid out as the initializer, kept only along the
    axes where it varies (per-channel: one value per output channel)."""
    full = np.broadcast_to(scale, kernel_shape).reshape(shape)
    for axis in range(full.ndim):
        first = np.take(full, [0], axis=axis)
        if np.array_equal(full, np.broadcast_to(first, full.shape)):
            full = first
    return np.ascontiguousarray(full, np.float32)


def embed_int8_weights(graph: Any, model: CompressedModel) -> tuple[Any, int, int]:
    """(graph, weights replaced, quantized weights of the model). Initializers are matched
    by the bytes of `codes * scale` in float32 (the traced values)."""
    from onnx import TensorProto, helper, numpy_helper

    pairs = quantized_kernels(model)
    if not pairs:
        return graph, 0, 0
    by_digest = {}
    for codes, scale in pairs:
        dequantized = codes.astype(np.float32) * scale
        by_digest[_digest(dequantized)] = (codes, scale)
    nodes, replaced = [], 0
    for init in list(graph.graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        value = numpy_helper.to_array(init)
        match = by_digest.get(_digest(value))
        if match is None:
            continue
        codes, scale = match
        name, shape = init.name, tuple(value.shape)
        graph.graph.initializer.remove(init)
        graph.graph.initializer.extend([
            numpy_helper.from_array(codes.reshape(shape).astype(np.int8), f"{name}_int8"),
            numpy_helper.from_array(_smallest_scale(scale, codes.shape, shape), f"{name}_scale")])
        nodes += [helper.make_node("Cast", [f"{name}_int8"], [f"{name}_int8_float"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", [f"{name}_int8_float", f"{name}_scale"], [name])]
        replaced += 1
    existing = list(graph.graph.node)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes + existing)
    return graph, replaced, len(pairs)
