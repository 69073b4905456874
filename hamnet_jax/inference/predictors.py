"""One `Predictor` interface over the backends: `predict(arrays) -> dict` of outputs.

Requests are raw inputs (inference/raw_inputs.py: the user's units, NaN = missing);
outputs are `hamnet predict`'s columns (inference/raw_model.py). Backends:

* `JaxPredictor`   the run's own model under `jit`, one compiled function per batch-size
                   bucket: a request is padded up to the next bucket (larger ones run in
                   chunks of the largest), so steady-state serving never recompiles.
                   Deterministic (`mc_samples=0`) or MC with K fixed mask sets.
* `OnnxPredictor`  an exported graph (export/onnx_export.py) in ONNX Runtime, with its
                   thread counts and graph optimization level (the original framework's
                   `OptimizationLevel`); CPU, or the CUDA / TensorRT execution providers
                   when onnxruntime-gpu is installed.

A predictor validates every request (`validate`) and answers with a `ValueError`
naming the input and the subject row (see `validate_raw`).
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from hamnet_jax.errors import InputError
from hamnet_jax.inference.raw_inputs import RawInputSpec, validate_raw
from hamnet_jax.inference.raw_model import RawModel

DEFAULT_BUCKETS = (1, 8, 32, 128, 256)
ONNX_LEVELS = ("disable", "basic", "extended", "all")
ONNX_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                  "tensorrt": "TensorrtExecutionProvider"}


class Predictor(abc.ABC):
    """Raw request in, `output_names` out, one row per subject. A request runs in chunks
    of at most `max_batch` rows; with `buckets`, each chunk is padded up to the next
    bucket (the JAX backend compiles once per bucket); without, it runs at its size."""

    spec: RawInputSpec
    output_names: tuple[str, ...]
    max_batch: int = 256
    buckets: tuple[int, ...] | None = None

    def validate(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return validate_raw(arrays, self.spec)

    def predict(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return self.run_validated(self.validate(arrays))

    __call__ = predict  # a predictor is the inference pipeline the original framework returns

    def run_validated(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for a request `validate` has checked and padded."""
        n = next(iter(arrays.values())).shape[0]
        parts = []
        for start in range(0, n, self.max_batch):
            chunk = {k: v[start:start + self.max_batch] for k, v in arrays.items()}
            rows = next(iter(chunk.values())).shape[0]
            out = self.run_batch(pad_rows(chunk, self.bucket(rows)))
            parts.append({k: np.asarray(out[k])[:rows] for k in self.output_names})
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in self.output_names}

    def bucket(self, n: int) -> int:
        if not self.buckets:
            return n
        return next((b for b in self.buckets if b >= n), self.buckets[-1])

    @property
    def warmup_sizes(self) -> tuple[int, ...]:
        """Batch sizes to run once at load, so no real request pays for a first call (the
        JAX backend compiles one program per bucket)."""
        return self.buckets or (min(8, self.max_batch),)

    @abc.abstractmethod
    def run_batch(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """Outputs for one checked chunk of at most `max_batch` rows."""


def pad_rows(arrays: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Rows padded up to `size` by repeating the first (a valid subject; dropped after)."""
    n = next(iter(arrays.values())).shape[0]
    if n == size:
        return arrays
    index = np.concatenate([np.arange(n), np.zeros(size - n, np.int64)])
    return {k: v[index] for k, v in arrays.items()}


def checked_sizes(sizes: Sequence[int], max_batch: int, name: str) -> tuple[int, ...]:
    """`sizes` sorted, each a batch size in 1..max_batch (an InputError naming `name` if not)."""
    if not sizes or any(int(b) < 1 or int(b) > max_batch for b in sizes):
        raise InputError(f"{name}: expected batch sizes in 1..max_batch={max_batch}, got {list(sizes)}")
    return tuple(sorted({int(b) for b in sizes}))


def checked_buckets(buckets: Sequence[int] | None, max_batch: int) -> tuple[int, ...] | None:
    """Padding buckets: `checked_sizes`, and `max_batch` always one of them."""
    if int(max_batch) < 1:
        raise InputError(f"max_batch: expected a positive batch size, got {max_batch}")
    if buckets is None:
        return None
    return tuple(sorted(set(checked_sizes(buckets, max_batch, "buckets")) | {int(max_batch)}))


class JaxPredictor(Predictor):
    def __init__(self, raw: RawModel, buckets: Sequence[int] = DEFAULT_BUCKETS, max_batch: int | None = None) -> None:
        self.raw, self.spec, self.output_names = raw, raw.spec, raw.output_names
        self.max_batch = int(max_batch or max(buckets))
        self.buckets = checked_buckets(buckets, self.max_batch)
        exact = raw.model.config.dtype == "float32"  # fp32 means fp32 on a GPU too, not TF32 matmuls

        def call(arrays: dict) -> dict:
            with jax.default_matmul_precision("highest" if exact else "default"):
                return raw(arrays)

        self._fn = jax.jit(call)

    @property
    def compiled_shapes(self) -> int:
        """Distinct input shapes compiled so far (at most one per bucket)."""
        return int(self._fn._cache_size())

    def run_batch(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        return jax.device_get(self._fn(arrays))


def onnx_session(path: str | os.PathLike | bytes, intra_op_threads: int = 0, inter_op_threads: int = 0,
                 optimization_level: str = "all", providers: Sequence[str] = ("cpu",)) -> Any:
    """An ONNX Runtime session of a file or a serialized graph (threads 0 = ONNX Runtime's
    default; optimization level one of `ONNX_LEVELS`; providers from `ONNX_PROVIDERS`, in
    order of preference)."""
    import onnxruntime as ort

    levels = dict(zip(ONNX_LEVELS, (ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                    ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                    ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                    ort.GraphOptimizationLevel.ORT_ENABLE_ALL), strict=True))
    if optimization_level not in levels:
        raise InputError(f"optimization_level: unknown value {optimization_level!r}; expected one of {list(levels)}")
    unknown = [p for p in providers if p not in ONNX_PROVIDERS]
    if unknown:
        raise InputError(f"providers: unknown {unknown}; expected some of {list(ONNX_PROVIDERS)}")
    available = ort.get_available_providers()
    missing = [p for p in providers if ONNX_PROVIDERS[p] not in available]
    if missing:
        raise InputError(f"ONNX Runtime provider(s) {missing} are not available here (available: {available}); "
                         "the CUDA and TensorRT providers need onnxruntime-gpu and a GPU")
    if not isinstance(path, bytes) and not Path(path).is_file():
        raise InputError(f"ONNX file {path} does not exist")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = int(intra_op_threads)
    options.inter_op_num_threads = int(inter_op_threads)
    options.graph_optimization_level = levels[optimization_level]
    return ort.InferenceSession(path if isinstance(path, bytes) else str(path), options,
                                providers=[ONNX_PROVIDERS[p] for p in providers])


def with_batch_size(model: Any, batch: int) -> bytes:
    """The graph with its symbolic batch dimension fixed to `batch` (serialized). ONNX
    Runtime then folds the graph's shape arithmetic (Shape / Gather / Concat chains that
    jax2onnx emits for a symbolic batch) into constants: the optimized standard-tier graph
    has 969 nodes with a symbolic batch, 710 with it fixed; batch-1 latency 2.4 -> 1.3 ms
    in one measurement here."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in list(fixed.graph.input) + list(fixed.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_value = int(batch)
    del fixed.graph.value_info[:]  # intermediate shapes are inferred again, now concrete
    return fixed.SerializeToString()


class OnnxPredictor(Predictor):
    """A raw-input graph in ONNX Runtime (export with raw inputs, the default). With
    `buckets`, requests are padded up to the next bucket. `fixed_batches` (default: the
    buckets) get a session each with the batch dimension fixed (`with_batch_size`: ONNX
    Runtime then folds the graph's shape arithmetic, 3-19% faster a call, measured on the
    standard tier); every other size runs on one session of symbolic batch. Each session
    holds its own buffers (~13 MiB on the standard tier), and a server that reloads the
    model keeps some of each version's heap: fix few sizes (docs/measurements.md, soak)."""

    def __init__(self, path: str | os.PathLike, spec: RawInputSpec, intra_op_threads: int = 0,
                 inter_op_threads: int = 0, optimization_level: str = "all", providers: Sequence[str] = ("cpu",),
                 max_batch: int = 256, buckets: Sequence[int] | None = None,
                 fixed_batches: Sequence[int] | None = None):
        self.max_batch = int(max_batch)
        self.buckets = checked_buckets(buckets, self.max_batch)
        fixed = self.buckets if fixed_batches is None else checked_sizes(fixed_batches, self.max_batch, "fixed_batches")
        settings = (intra_op_threads, inter_op_threads, optimization_level, providers)
        self.session = onnx_session(path, *settings)
        names = tuple(i.name for i in self.session.get_inputs())
        if names != spec.names:
            raise InputError(f"ONNX file {path} takes inputs {list(names)}, not the run's raw inputs "
                             f"{list(spec.names)}: export it with raw inputs (without --standardized-inputs)")
        self.spec = spec
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.sessions: dict[int, Any] = {}
        if fixed:
            import onnx

            graph = onnx.load(str(path))
            self.sessions = {b: onnx_session(with_batch_size(graph, b), *settings) for b in fixed}

    @property
    def warmup_sizes(self) -> tuple[int, ...]:
        """Every fixed session's size, and one the symbolic-batch session runs."""
        symbolic = [n for n in (min(8, self.max_batch), *range(1, self.max_batch + 1))
                    if n not in self.sessions and self.bucket(n) == n]
        return tuple(sorted(self.sessions)) + tuple(symbolic[:1])

    def run_batch(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        session = self.sessions.get(next(iter(arrays.values())).shape[0], self.session)
        return dict(zip(self.output_names, session.run(list(self.output_names), arrays), strict=True))
