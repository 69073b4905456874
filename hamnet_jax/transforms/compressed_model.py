"""A pruned and/or quantized HAMNet ready to run: config, variables and execution mode,
plus the measurements a compression result reports (test metrics, checkpoint bytes,
latency). Measured, never estimated."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hamnet_jax.data.batch import Batch
from hamnet_jax.inference.batched import map_batched
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.transforms.compressed_checkpoint import float_checkpoint_bytes, save_compressed
from hamnet_jax.transforms.int8_execution import int8_mode


@dataclasses.dataclass
class CompressedModel:
    """`params` hold int8 codes where `bits` > 0 (scales in `quant`) and run on
    `mode` (`weight_only` / `dynamic` / `static`); `mode=None` is a float model."""

    config: HAMNetConfig
    params: Any
    quant: Any | None = None
    bits: Any | None = None
    mode: str | None = None

    def apply_fn(self) -> Callable:
        """`apply(variables, batch, **kw)` like `HAMNet.apply`, on this model's execution path
        (the `"quant"` collection is added to whatever variables are passed)."""
        model = HAMNet(self.config)
        if self.mode is None:
            return model.apply
        quant, mode = self.quant, self.mode

        def apply(variables: dict, *args: Any, **kwargs: Any) -> Any:
            with int8_mode(mode):
                return model.apply({**variables, "quant": quant}, *args, **kwargs)

        return apply

    def predict_fn(self) -> Callable[[Batch], dict]:
        apply, params = self.apply_fn(), self.params
        return jax.jit(lambda b: apply({"params": params}, b, deterministic=True)[0])

    def checkpoint_bytes(self, directory: str | Path | None = None) -> int:
        """Size on disk of this model's compressed checkpoint."""
        with tempfile.TemporaryDirectory() as tmp:
            return save_compressed(Path(directory or tmp) / "model.npz", self.params, self.quant, self.bits)


def float_bytes(params: Any) -> int:
    """Size on disk of dense float32 params in the same container."""
    with tempfile.TemporaryDirectory() as tmp:
        return float_checkpoint_bytes(Path(tmp) / "dense.npz", params)


def test_metrics(predict: Callable[[Batch], dict], batch: Batch, target_std: float = 1.0,
                 batch_size: int = 512) -> dict[str, float]:
    """MAE, RMSE and R^2 of the mean prediction (in target units when `target_std` given)."""
    out = map_batched(predict, batch, batch_size)
    y = np.asarray(batch.targets, np.float64)
    err = (np.asarray(out["mean"], np.float64) - y) * target_std
    ss_tot = float(np.sum((y - y.mean()) ** 2)) * target_std**2
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt(np.mean(err**2))),
            "r2": 1.0 - float(np.sum(err**2)) / max(ss_tot, 1e-12)}


def latency_ms(predicts: dict[str, Callable[[Batch], dict]], batch: Batch, reps: int = 20) -> dict[str, float]:
    """Median wall time per call of each predictor on `batch`, measured interleaved (one
    call of each per round) after a compile call, so the machine's load hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in predicts}
    for f in predicts.values():
        jax.block_until_ready(f(batch))
    for _ in range(reps):
        for name, f in predicts.items():
            start = time.perf_counter()
            jax.block_until_ready(f(batch))
            times[name].append(time.perf_counter() - start)
    return {k: float(np.median(v) * 1e3) for k, v in times.items()}
