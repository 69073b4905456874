"""Quantize a (possibly pruned) HAMNet: fp16/bf16 casting, int8 PTQ (weight-only, dynamic,
static with calibration), quantization-aware fine-tuning, and sensitivity-chosen mixed
widths. Returns a `CompressedModel` and what was done."""

from __future__ import annotations

from typing import Any

import numpy as np

from hamnet_jax.config import QuantizationConfig, QuantizationMode
from hamnet_jax.data.batch import Batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.training.fit_options import FitOptions
from hamnet_jax.training.plan import Plan
from hamnet_jax.training.loop import validation_loss
from hamnet_jax.inference.compressed import CompressedModel
from hamnet_jax.transforms.int8_execution import calibrate
from hamnet_jax.transforms.mixed_precision import sensitivity_bits
from hamnet_jax.transforms.quantization import cast_weights, quantize_bits, quantize_params
from hamnet_jax.transforms.select import leaves_by_path


def calibration_batches(train: Batch, qcfg: QuantizationConfig) -> list[Batch]:
    rng = np.random.default_rng(qcfg.seed)
    order = rng.permutation(train.size)
    size = min(qcfg.calibration_batch_size, train.size)
    return [train.take(order[i * size:(i + 1) * size])
            for i in range(min(qcfg.calibration_batches, max(train.size // size, 1)))]


def quantize_model(config: HAMNetConfig, params: Any, train: Batch, val: Batch, qcfg: QuantizationConfig,
                   options: FitOptions | None = None) -> tuple[CompressedModel, dict[str, Any]]:
    """The quantized model and a report (mode, bits per layer, QAT history, ...); QAT
    fine-tunes through `fit` under `options`."""
    options = options or FitOptions()
    mode = QuantizationMode(qcfg.mode)
    if mode in (QuantizationMode.FP16, QuantizationMode.BF16):
        dtype = "float16" if mode == QuantizationMode.FP16 else "bfloat16"
        return CompressedModel(config.replace(dtype=dtype), cast_weights(params, dtype)), {"mode": mode.value}
    report: dict[str, Any] = {"mode": mode.value}
    model = HAMNet(config)
    bits = quantize_bits(params)
    if mode == QuantizationMode.MIXED:
        def loss(p: Any) -> float:  # eval_step is jitted once: the tree keeps its shapes
            return validation_loss(model.apply, p, val, 512)["val_loss"]

        bits, report["sensitivity"] = sensitivity_bits(params, loss, qcfg.candidate_bits, qcfg.sensitivity_tolerance)
    if mode == QuantizationMode.QAT:
        _, scales = quantize_params(params, bits)  # marks which layers the fake-quant path covers
        fake = CompressedModel(config, params, scales, bits, "fake")
        plan = Plan(init_params=params, wrap_apply=fake.wrap_apply)
        result = options.fit(config, options.config(qcfg.qat_epochs, qcfg.batch_size, qcfg.learning_rate,
                                                     qcfg.seed), train, val, plan)
        params = result.params
        report["qat_history"] = result.history
    codes, scales = quantize_params(params, bits)
    run_mode = {QuantizationMode.WEIGHT_ONLY: "weight_only", QuantizationMode.STATIC: "static"}.get(mode, "dynamic")
    if mode == QuantizationMode.STATIC:
        scales = calibrate(model.apply, params, scales, calibration_batches(train, qcfg), qcfg.calibration_method,
                           qcfg.percentile)
        report["calibration"] = qcfg.calibration_method
    report["execution"] = run_mode
    report["bits"] = {k: int(v) for k, v in leaves_by_path(bits).items() if v}
    return CompressedModel(config, codes, scales, bits, run_mode), report

