"""`hamnet export --format triton`: a model repository for Triton Inference Server's
`onnxruntime` backend, written from the run's raw-input ONNX graph.

    DIR/
      README.md                  how to serve it: tritonserver --model-repository DIR
      <model>/config.pbtxt       the model configuration (Triton's ModelConfig, text format)
      <model>/1/model.onnx       the graph (fp32, raw inputs; MC dropout outputs with K > 0)
      <model>/1/model.onnx.json  its description and parity against the JAX model

The configuration states every input and output by name, data type and dims exactly as the
graph holds them (the batch dimension is Triton's: `max_batch_size`), turns on dynamic
batching with preferred sizes, and places one instance per `instance_count` on the CPU or
GPU. It is written as text, not through Triton's protobuf, so the export needs no Triton
client; tests parse it with `tritonclient`'s `model_config_pb2`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import write_text_atomic

# ONNX TensorProto element types -> Triton data types (model_config.proto)
TRITON_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 5: "TYPE_INT16", 6: "TYPE_INT32", 7: "TYPE_INT64",
                9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64", 16: "TYPE_BF16"}
MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def tensor_specs(model_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(inputs, outputs) of the ONNX graph: name, Triton data type, dims after the batch dimension."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph

    def spec(value: Any) -> dict[str, Any]:
        tensor = value.type.tensor_type
        if tensor.elem_type not in TRITON_TYPES:
            raise InputError(f"{model_path}: tensor {value.name!r} has ONNX element type {tensor.elem_type}, which "
                             "Triton's onnxruntime backend has no data type for")
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        return {"name": value.name, "data_type": TRITON_TYPES[tensor.elem_type], "dims": dims[1:]}

    return [spec(v) for v in graph.input], [spec(v) for v in graph.output]


def config_text(name: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], max_batch_size: int,
                preferred_batch_sizes: tuple[int, ...], max_queue_delay_us: int, instance_count: int,
                kind: str) -> str:
    """config.pbtxt for the onnxruntime backend."""
    def tensors(specs: list[dict[str, Any]]) -> str:
        rows = [f'  {{\n    name: "{s["name"]}"\n    data_type: {s["data_type"]}\n    dims: [ '
                f'{", ".join(str(d) for d in s["dims"])} ]\n  }}' for s in specs]
        return "[\n" + ",\n".join(rows) + "\n]"

    return (f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: {max_batch_size}\n'
            f"input {tensors(inputs)}\noutput {tensors(outputs)}\n"
            f"dynamic_batching {{\n  preferred_batch_size: [ {', '.join(map(str, preferred_batch_sizes))} ]\n"
            f"  max_queue_delay_microseconds: {max_queue_delay_us}\n}}\n"
            f"instance_group [\n  {{\n    count: {instance_count}\n    kind: {kind}\n  }}\n]\n")


def write_triton_repository(export_onnx: Any, out_dir: str | os.PathLike, name: str = "hamnet",
                            max_batch_size: int = 256, preferred_batch_sizes: tuple[int, ...] = (8, 32),
                            max_queue_delay_us: int = 2000, instance_count: int = 1,
                            kind: str = "KIND_CPU") -> dict[str, Any]:
    """Write the repository: `export_onnx(path)` writes the graph (and returns its
    description), then config.pbtxt is derived from the graph's own tensors."""
    if not MODEL_NAME.match(name):
        raise InputError(f"--name {name!r}: a Triton model name is letters, digits, '_', '.', '-'")
    if max_batch_size < 1 or any(not 1 <= b <= max_batch_size for b in preferred_batch_sizes):
        raise InputError(f"Triton batching: max_batch_size {max_batch_size} must be >= 1 and hold every preferred "
                         f"batch size {list(preferred_batch_sizes)}")
    if kind not in ("KIND_CPU", "KIND_GPU"):
        raise InputError(f"Triton instance kind {kind!r}: expected KIND_CPU or KIND_GPU")
    root = Path(out_dir)
    model_path = root / name / "1" / "model.onnx"
    description = export_onnx(model_path)
    inputs, outputs = tensor_specs(model_path)
    config = config_text(name, inputs, outputs, max_batch_size, preferred_batch_sizes, max_queue_delay_us,
                         instance_count, kind)
    write_text_atomic(root / name / "config.pbtxt", config)
    write_text_atomic(root / "README.md", (
        f"# Triton model repository: {name}\n\nWritten by `hamnet export --format triton`. Serve it with Triton "
        f"Inference Server's onnxruntime backend:\n\n    tritonserver --model-repository {root.resolve()}\n\n"
        f"Inputs are the raw inputs (data-file units, NaN = missing); `{name}/1/model.onnx.json` lists them with "
        "the outputs and the graph's parity against the JAX model.\n"))
    return {**description, "repository": str(root), "config": str(root / name / "config.pbtxt"), "name": name,
            "max_batch_size": max_batch_size, "inputs_spec": inputs, "outputs_spec": outputs}
