"""Trace a `RawModel`'s three parts to ONNX with jax2onnx and join them into one graph.

Parts (inference/raw_model.py): `standardize` (raw arrays -> standardized arrays),
`samples` (standardized arrays -> per-sample `mean` / `log_var` / `logits` [K, B]) and
`outputs` (samples -> calibrated target-unit outputs). They are traced apart so the
precision passes (export/onnx_precision.py) change the model part only: preprocessing
and the MC statistics stay float32. `onnx.compose.merge_models` joins them; every part's
internal names get a prefix, the joined graph's inputs and outputs keep the plain names.

jax2onnx traces at float32 (its half-precision graphs do not load in ONNX Runtime):
a run computing in fp16 / bf16 is traced with its config and params cast to float32.
The batch dimension is symbolic ("B"); visit slots are fixed at the run's `max_visits`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from hamnet_jax.data.batch import Batch, random_batch
from hamnet_jax.errors import InputError
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.models.config import MODALITIES
from hamnet_jax.platform.matmul import without_gradient_rule

# the standardized arrays: the model part's inputs, and the standardized graph's
STANDARDIZED_NAMES: tuple[str, ...] = tuple(
    n for m in MODALITIES for n in (m, f"{m}_mask")
) + ("categorical", "modality_mask", "visit_mask", "visit_times")
STANDARDIZED_PREFIX = "standardized_"  # the standardize part's output names (inputs keep the raw names)
LIBRARY_LOGGERS = ("onnx_ir", "jax2onnx", "onnxscript", "onnx", "onnxruntime")


@contextlib.contextmanager
def library_logs_below(level: int | None = None) -> Iterator[None]:
    """Hold the exporting libraries' log records below `level` (default: the root
    logger's, i.e. the user's): their serialization chatter shows only at DEBUG."""
    level = logging.getLogger().getEffectiveLevel() if level is None else level
    loggers = [logging.getLogger(n) for n in LIBRARY_LOGGERS]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG if level <= logging.DEBUG else logging.ERROR)
    try:
        import onnxruntime as ort  # its C++ logger: sessions the quantizer opens print shape-merge warnings

        ort.set_default_logger_severity(0 if level <= logging.DEBUG else 3)
    except ImportError:
        pass
    try:
        yield
    finally:
        for lg, lv in zip(loggers, before, strict=True):
            lg.setLevel(lv)


def batch_fields(batch: Batch) -> list:
    """A Batch's arrays in `STANDARDIZED_NAMES` order (traced or not)."""
    return [a for m in MODALITIES for a in (batch.inputs[m], batch.feature_masks[m])] + [
        batch.categorical, batch.modality_mask, batch.visit_mask, batch.visit_times]


def batch_to_arrays(batch: Batch) -> list[np.ndarray]:
    """A Batch as the standardized graph's positional inputs, in `STANDARDIZED_NAMES` order."""
    return [np.asarray(a) for a in batch_fields(batch)]


def arrays_to_batch(arrays: dict[str, Any]) -> Batch:
    b = arrays["visit_mask"].shape[0]
    zeros = jax.numpy.zeros((b,), jax.numpy.float32)
    return Batch(inputs={m: arrays[m] for m in MODALITIES}, feature_masks={m: arrays[f"{m}_mask"] for m in MODALITIES},
                 categorical=arrays["categorical"], modality_mask=arrays["modality_mask"],
                 visit_mask=arrays["visit_mask"], visit_times=arrays["visit_times"], targets=zeros, labels=zeros)


def _trace(fn: Callable, specs: list[jax.ShapeDtypeStruct], input_names: list[str],
           output_names: list[str], name: str) -> Any:
    try:
        from jax2onnx import to_onnx
    except ImportError:
        raise InputError("ONNX export needs jax2onnx: pip install 'hamnet-jax[export]'") from None
    with library_logs_below(), without_gradient_rule():  # inference graphs: plain dot_generals (platform/matmul.py)
        model = to_onnx(fn, specs, model_name=name, return_mode="proto", input_names=input_names,
                        output_names=output_names)
    return without_wrong_shapes(model)


def _dims(value: Any) -> list[int | None] | None:
    """A value's declared dims (None for a symbolic or unknown one), or None without a shape."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]


def _agree(declared: list[int | None] | None, inferred: list[int | None] | None) -> bool:
    if declared is None or inferred is None:
        return True
    return len(declared) == len(inferred) and all(a is None or b is None or a == b
                                                  for a, b in zip(declared, inferred, strict=True))


def wrong_shapes(model: Any) -> list[str]:
    """The intermediate values whose declared shape (`value_info`) ONNX's own shape inference
    contradicts."""
    import onnx

    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]
    inferred = {v.name: _dims(v) for v in onnx.shape_inference.infer_shapes(bare, data_prop=True).graph.value_info}
    return [v.name for v in model.graph.value_info if not _agree(_dims(v), inferred.get(v.name))]


def without_wrong_shapes(model: Any) -> Any:
    """`model` without the declared shapes ONNX's inference contradicts. jax2onnx 0.17 declares
    a broadcasting Mul's output with its smaller operand's shape ([B, 4, 1] for [B, 4, 64]);
    ONNX Runtime then logs `Error merging shape info` at every session start. Without the
    declaration ONNX Runtime infers the shape itself."""
    wrong = set(wrong_shapes(model))
    if wrong:
        keep = [v for v in model.graph.value_info if v.name not in wrong]
        del model.graph.value_info[:]
        model.graph.value_info.extend(keep)
    return model


def _spec(shape: tuple, dtype: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(("B",) + tuple(shape[1:]), dtype)


def standardize_graph(raw: RawModel) -> Any:
    names = list(raw.spec.names)
    specs = [jax.ShapeDtypeStruct(s, np.float32) for s in raw.spec.shapes("B").values()]

    def fn(*arrays: jax.Array) -> tuple:
        return tuple(batch_fields(raw.standardize(dict(zip(names, arrays, strict=True)))))

    return _trace(fn, specs, names, [STANDARDIZED_PREFIX + n for n in STANDARDIZED_NAMES], "hamnet_standardize")


def model_graph(raw: RawModel) -> Any:
    """Standardized arrays -> `sample_<name>` [K, B] (distilled `features` [1, B, F]) on the
    float32 model (`RawModel.float32`)."""
    raw = raw.float32()
    example = batch_to_arrays(random_batch(raw.model.config, 1, raw.spec.max_visits))
    specs = [_spec(a.shape, a.dtype) for a in example]

    def fn(*arrays: jax.Array) -> tuple:
        out = raw.samples(arrays_to_batch(dict(zip(STANDARDIZED_NAMES, arrays, strict=True))))
        return tuple(out[k] for k in raw.sample_names)

    return _trace(fn, specs, list(STANDARDIZED_NAMES), [f"sample_{k}" for k in raw.sample_names], "hamnet_model")


def outputs_graph(raw: RawModel) -> Any:
    k = max(raw.mc_samples, 1)
    width = {"features": (len(raw.distilled.feature_mean),)} if raw.distilled is not None else {}
    specs = [jax.ShapeDtypeStruct((k, "B") + width.get(n, ()), np.float32) for n in raw.sample_names]

    def fn(*samples: jax.Array) -> tuple:
        out = raw.outputs(dict(zip(raw.sample_names, samples, strict=True)))
        return tuple(out[n] for n in raw.output_names)

    return _trace(fn, specs, [f"sample_{n}" for n in raw.sample_names], list(raw.output_names), "hamnet_outputs")


def join(parts: list[tuple[str, Any]]) -> Any:
    """Chain graphs (name, ModelProto): each input of a part is fed by the previous part's
    output of the same name (or `standardized_<name>`); internal names get the part's
    prefix, the result's inputs and outputs keep their plain names."""
    import onnx.compose

    first_name, model = parts[0]
    model = onnx.compose.add_prefix(model, f"{first_name}/")
    for name, nxt in parts[1:]:
        nxt = onnx.compose.add_prefix(nxt, f"{name}/")
        outs = {o.name.split("/", 1)[1]: o.name for o in model.graph.output}
        io_map = []
        for i in nxt.graph.input:
            plain = i.name.split("/", 1)[1]
            io_map.append((outs.get(plain) or outs[STANDARDIZED_PREFIX + plain], i.name))
        model = onnx.compose.merge_models(model, nxt, io_map=io_map, outputs=[o.name for o in nxt.graph.output])
    _strip_prefixes(model)
    return model


def _strip_prefixes(model: Any) -> None:
    """Rename the graph's inputs and outputs (and their uses) to the part-local names."""
    rename = {v.name: v.name.split("/", 1)[1] for v in list(model.graph.input) + list(model.graph.output)}
    for v in list(model.graph.input) + list(model.graph.output):
        v.name = rename[v.name]
    for node in model.graph.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]
