"""`export_run_onnx`: a run (any kind) -> one ONNX file at a precision, with its parity.

The graph (export/onnx_graph.py) takes either the raw inputs (inference/raw_inputs.py:
values in the data file's units, NaN = missing, the run's standardization folded in) or
the standardized arrays, and returns `hamnet predict`'s outputs (inference/raw_model.py):
with K = `mc_samples` > 0 the K MC-dropout mask sets are constants of the graph, K = 0 is
the deterministic model, with the run's distilled spreads (`uncertainty: distilled`) or
without (no `epistemic_std`). Precision passes (export/onnx_precision.py)
touch the model part only.

Parity against the float32 JAX model on random raw requests at batch 1 and 64, and, when
the run's data is given, test-split MAE beside the float32 JAX model's, are printed by the
CLI and stored in `<file>.json` next to the graph. fp32 must agree to 1e-4 absolute and
fp16 to 1e-2 relative on `prediction`, or the export fails; int8 reports its MAE change.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hamnet_jax.data.arrays import CohortArrays
from hamnet_jax.data.cohort_cache import CachedCohort
from hamnet_jax.errors import InputError
from hamnet_jax.export.onnx_graph import (STANDARDIZED_NAMES, batch_to_arrays, join, model_graph, outputs_graph,
                                          standardize_graph)
from hamnet_jax.export.onnx_int8_weights import embed_int8_weights
from hamnet_jax.export.onnx_precision import to_precision
from hamnet_jax.inference.factory import sidecar
from hamnet_jax.inference.predictor import primary_output
from hamnet_jax.inference.predictors import onnx_session
from hamnet_jax.inference.raw_inputs import cohort_to_raw, random_raw, validate_raw
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.io_atomic import write_atomic, write_json_atomic
from hamnet_jax.transforms.losses import probability_log_loss

FP32_TOLERANCE = 1e-4  # max |ONNX - JAX| on `prediction`, target units
FP16_TOLERANCE = 1e-2  # max relative difference on `prediction`
INT8_MAE_TOLERANCE = 0.01  # relative test-MAE increase over float32 JAX
CALIBRATION_BATCH = 64
CALIBRATION_BATCHES = 16


@dataclasses.dataclass
class OnnxExport:
    path: Path
    precision: str
    raw_inputs: bool
    mc_samples: int
    uncertainty: str  # mc, distilled or none (inference/raw_model.py)
    inputs: dict[str, list]
    outputs: list[str]
    bytes: int
    seconds: float
    parity: dict[str, Any]
    int8_weights: dict[str, int] | None = None  # a quantized run's own codes embedded / quantized weights

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        return d


def graph_feeds(raw: RawModel, requests: dict[str, np.ndarray], raw_inputs: bool) -> dict[str, np.ndarray]:
    """The graph's input feed for a raw request (standardized on the host for a
    standardized-input graph)."""
    checked = validate_raw(requests, raw.spec)
    if raw_inputs:
        return checked
    return dict(zip(STANDARDIZED_NAMES, batch_to_arrays(jax.jit(raw.standardize)(checked)), strict=True))


def calibration_feeds(raw: RawModel, train: CohortArrays | CachedCohort | Mapping[str, np.ndarray]
                      ) -> list[dict[str, np.ndarray]]:
    """Input feeds of the model part (standardized arrays) for static int8 calibration:
    up to `CALIBRATION_BATCHES` batches of `CALIBRATION_BATCH` subjects of the training
    split (only those subjects are read) or of a raw request."""
    most = CALIBRATION_BATCH * CALIBRATION_BATCHES
    if isinstance(train, Mapping):
        requests = dict(train)
    else:
        requests = cohort_to_raw(train.rows(np.arange(min(train.num_subjects, most))), raw.spec)
    n = min(next(iter(requests.values())).shape[0], most)
    feeds = []
    for start in range(0, n, CALIBRATION_BATCH):
        part = {k: v[start:start + CALIBRATION_BATCH] for k, v in requests.items()}
        feeds.append(graph_feeds(raw, part, raw_inputs=False))
    return feeds


EXPORT_STEPS = ("calibrate", "convert", "check against JAX")


def export_run_onnx(raw: RawModel, out_path: str | os.PathLike, precision: str = "fp32", raw_inputs: bool = True,
                    train: CohortArrays | CachedCohort | Mapping[str, np.ndarray] | None = None,
                    test: CohortArrays | CachedCohort | None = None, calibration_method: str = "minmax",
                    on_step: Callable[[str], None] | None = None) -> OnnxExport:
    """Write the graph atomically, check it against JAX, store `<file>.json`.
    `train` (the training split, or a raw request) calibrates static int8; `test` adds
    the test-MAE comparison; `on_step(name)` is told as each of the EXPORT_STEPS begins."""
    step = on_step or (lambda name: None)
    raw.exportable()
    started = time.perf_counter()
    step("calibrate")
    calibration = calibration_feeds(raw, train) if precision == "int8" and train is not None else None
    step("convert")
    model, int8_weights = model_graph(raw), None
    if raw.model.mode is not None and precision == "fp32":  # a quantized run: its own int8 weights
        model, embedded, quantized = embed_int8_weights(model, raw.model)
        int8_weights = {"embedded": embedded, "quantized": quantized}
    model = to_precision(model, precision, calibration, calibration_method)
    parts = [("model", model), ("outputs", outputs_graph(raw))]
    if raw_inputs:
        parts.insert(0, ("standardize", standardize_graph(raw)))
    graph = join(parts)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda f: f.write(graph.SerializeToString()), mode="wb")
    seconds = time.perf_counter() - started
    step("check against JAX")
    session = onnx_session(out)
    parity = check_parity(session, raw, precision, raw_inputs, test)
    result = OnnxExport(out, precision, raw_inputs, raw.mc_samples, raw.uncertainty,
                        {i.name: list(i.shape) for i in session.get_inputs()},
                        [o.name for o in session.get_outputs()], out.stat().st_size, round(seconds, 2), parity,
                        int8_weights)
    write_json_atomic(sidecar(out), result.to_dict())
    failed = parity.get("failed")
    if failed:
        raise InputError(f"{out}: {failed}; the export is not trustworthy")
    return result


def on_cpu(fn: Callable) -> Callable:
    """`fn` jitted and run on the CPU: the exact float32 reference (a GPU's default
    float32 matmul precision is TF32)."""
    cpu = jax.devices("cpu")[0]
    jitted = jax.jit(fn)

    def run(*args: Any) -> Any:
        with jax.default_device(cpu):
            return jitted(*jax.device_put(args, cpu))

    return run


def check_parity(session: Any, raw: RawModel, precision: str, raw_inputs: bool,
                 test: CohortArrays | CachedCohort | None = None) -> dict[str, Any]:
    """Max |ONNX - JAX| per output at batch 1 and 64 on random raw requests, the relative
    difference on `prediction`, and with `test` both test MAEs (a chunk of subjects at a
    time); `failed` says why when the precision's tolerance is not met."""
    reference = on_cpu(raw.float32().__call__)
    result: dict[str, Any] = {"reference": "JAX float32 model"}
    primary = primary_output(raw.output_names)  # `prediction`, or an outcome-only model's probability
    worst_abs = worst_rel = 0.0
    for bs in (1, 64):
        request = random_raw(raw.spec, raw.preprocessor, bs, seed=bs)
        names = [o.name for o in session.get_outputs()]
        got = dict(zip(names, session.run(names, graph_feeds(raw, request, raw_inputs)), strict=True))
        want = {k: np.asarray(v) for k, v in reference(validate_raw(request, raw.spec)).items()}
        diffs = {k: float(np.abs(got[k] - want[k]).max()) for k in want}
        gap = np.abs(got[primary] - want[primary])
        rel = float((gap / np.maximum(np.abs(want[primary]), 1e-6)).max())
        result[f"batch_{bs}"] = {"max_abs": diffs, f"{primary}_max_rel": rel}
        worst_abs, worst_rel = max(worst_abs, diffs[primary]), max(worst_rel, rel)
    if test is not None:
        got_parts, want_parts = [], []
        for part in test.chunks():
            request = cohort_to_raw(part, raw.spec)
            got_parts.append(session.run([primary], graph_feeds(raw, request, raw_inputs))[0])
            want_parts.append(np.asarray(reference(validate_raw(request, raw.spec))[primary]))
        got, want = np.concatenate(got_parts), np.concatenate(want_parts)
        if primary == "prediction":
            key, error = "test_mae", lambda p: float(np.abs(p - test.targets).mean())
        else:
            key, error = "test_log_loss", lambda p: float(np.mean(probability_log_loss(test.labels, p)))
        result[key] = {"onnx": error(got), "jax_fp32": error(want), "subjects": int(test.num_subjects)}
        result[key]["relative_change"] = result[key]["onnx"] / result[key]["jax_fp32"] - 1.0
    if precision == "fp32" and worst_abs > FP32_TOLERANCE:
        result["failed"] = f"fp32 {primary} differs from JAX by {worst_abs:.2e} > {FP32_TOLERANCE:g}"
    elif precision == "fp16" and worst_rel > FP16_TOLERANCE:
        result["failed"] = f"fp16 {primary} differs from JAX by {worst_rel:.2e} relative > {FP16_TOLERANCE:g}"
    elif precision.startswith("int8") and test is not None:
        test_key = "test_mae" if primary == "prediction" else "test_log_loss"
        result["within_tolerance"] = result[test_key]["relative_change"] <= INT8_MAE_TOLERANCE
    return result
