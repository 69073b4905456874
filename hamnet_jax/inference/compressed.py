"""A pruned and/or quantized HAMNet ready to run: config, variables and execution mode.
`apply_fn` runs it like `HAMNet.apply`, through the int8 execution path where the
weights are int8 codes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from hamnet_jax.data.batch import Batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.transforms.int8_execution import int8_mode
from hamnet_jax.transforms.quantization import dequantize_params


@dataclasses.dataclass
class CompressedModel:
    """`params` hold int8 codes where `bits` > 0 (scales in `quant`) and run on
    `mode` (`weight_only` / `dynamic` / `static`); `mode=None` is a float model."""

    config: HAMNetConfig
    params: Any
    quant: Any | None = None
    bits: Any | None = None
    mode: str | None = None
    _apply: Callable | None = dataclasses.field(default=None, repr=False, compare=False)

    def wrap_apply(self, apply: Callable) -> Callable:
        """`apply` (a HAMNet's apply, possibly of an execution config with another compute
        dtype) run on this model's execution path: the int8 interceptor is active and the
        `"quant"` collection is added to whatever variables are passed."""
        if self.mode is None:
            return apply
        quant, mode = self.quant, self.mode

        def quantized_apply(variables: dict, *args: Any, **kwargs: Any) -> Any:
            with int8_mode(mode):
                return apply({**variables, "quant": quant}, *args, **kwargs)

        return quantized_apply

    def apply_fn(self) -> Callable:
        """`apply(variables, batch, **kw)` like `HAMNet.apply`, on this model's execution path
        (one function per model, so jitted callers compile once)."""
        if self._apply is None:
            self._apply = self.wrap_apply(HAMNet(self.config).apply)
        return self._apply

    def apply(self, batch: Batch, **kwargs: Any) -> tuple[dict, dict]:
        """(outputs, aux) of this model on `batch` with its own variables, like
        `HAMNet(config).apply({"params": params}, batch)` for a float model."""
        return self.apply_fn()({"params": self.params}, batch, **kwargs)

    def float_params(self) -> Any:
        """Float params of the same model: the dequantized weights (what weight-only
        execution computes with); the params themselves for a float model."""
        if self.quant is None:
            return self.params
        return dequantize_params(self.params, self.quant)

    def predict_fn(self) -> Callable[[Batch], dict]:
        apply, params = self.apply_fn(), self.params
        return jax.jit(lambda b: apply({"params": params}, b, deterministic=True)[0])
