"""Predictions with uncertainty for a trained run, in target units.

`predict(run, batch)` draws Monte-Carlo dropout samples (`predict_with_uncertainty`, in two
programs: the masks, compiled for speed of compiling, and the passes under them),
applies the run's variance calibration, and returns mean, aleatoric / epistemic / total
standard deviations and the 90% interval.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hamnet_jax.platform.background_compile import Compiling
from hamnet_jax.data.batch import Batch, validate_batch
from hamnet_jax.data.batched import compile_ahead, map_batched
from hamnet_jax.data.visit_packing import chunked_packing_rows
from hamnet_jax.inference.calibration import UNCALIBRATED, Calibration, tempered_probability
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.models.mc_dropout import MASK_PROGRAM_OPTIONS
from hamnet_jax.models.uncertainty import Z90, mc_masks, predict_with_masks


@functools.partial(jax.jit, static_argnames=("apply_fn", "num_samples"), compiler_options=MASK_PROGRAM_OPTIONS)
def _masks(apply_fn: Callable, params: Any, batch: Batch, key: jax.Array, num_samples: int) -> tuple:
    return mc_masks(apply_fn, params, batch, key, num_samples)


@functools.partial(jax.jit, static_argnames=("apply_fn", "num_samples", "packed_visits"))
def _mc(apply_fn: Callable, params: Any, batch: Batch, masks: tuple, key: jax.Array, num_samples: int,
        packed_visits: int = 0) -> dict:
    return predict_with_masks(apply_fn, params, batch, masks, key, num_samples, packed_visits)


@functools.lru_cache(maxsize=32)
def _plain_apply(config: HAMNetConfig, packed_visits: int = 0) -> Callable:
    """One apply function per (config, packing), so the jitted MC step compiles once per model."""
    return HAMNet(config, packed_visits=packed_visits).apply


def predict_batch(
    config: HAMNetConfig, params: Any, batch: Batch, target_mean: float, target_std: float,
    calibration: Calibration = UNCALIBRATED, num_samples: int = 20, seed: int = 0, chunk: int = 256,
    apply_fn: Callable | None = None, visit_slots: int | None = None, visit_packing: bool = True,
    packed_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """MC-dropout predictions in target units, with the run's `calibration` applied.
    `apply_fn` (default `HAMNet(config).apply`) is the execution path, e.g. a quantized
    model's (`CompressedModel.apply_fn()`) with `params` its int8 codes. The batch is
    padded to `visit_slots` (the run's `data.max_visits`): the MC masks, drawn for that
    shape, are then the ones `hamnet predict` and exported graphs use. With `visit_packing`
    the plain model's per-visit work runs on the real visits only (models/hamnet.py), each
    under its own slot's masks: the same predictions; `packed_rows` (`mc_packing_rows`) sets
    the rows, else they come from this batch."""
    batch, apply_fn, packed = _prepared(config, batch, apply_fn, visit_slots, num_samples, chunk, visit_packing,
                                        packed_rows)
    key = jax.random.key(seed)
    # the masks (drawn for one subject's shapes: the same for every chunk) as host arrays, as
    # `compile_predict_ahead` compiled the MC program for them
    masks = jax.device_get(_masks(_mask_apply(config, apply_fn, packed), params, batch.take(np.arange(1)), key,
                                  num_samples))
    out = map_batched(lambda b: _mc(apply_fn, params, b, masks, key, num_samples, packed), batch, chunk)
    return {k: np.asarray(v) for k, v in calibrated_outputs(out, target_mean, target_std, calibration).items()}


def _prepared(config: HAMNetConfig, batch: Batch, apply_fn: Callable | None, visit_slots: int | None,
              num_samples: int, chunk: int, visit_packing: bool,
              packed_rows: int | None = None) -> tuple[Batch, Callable, int]:
    """The batch padded to the visit slots, the apply function and its packed rows: the
    plain model packs the real visits of the batch tiled per MC sample (a given execution
    path, e.g. a quantized model's, runs every slot)."""
    if visit_slots is not None:
        batch = batch.pad_visits(visit_slots)
    validate_batch(batch, config)
    if apply_fn is not None or not visit_packing:
        if packed_rows:
            raise ValueError("packed_rows applies to the plain model with visit_packing on; this call runs "
                             + ("a given apply_fn" if apply_fn is not None else "every visit slot"))
        return batch, apply_fn or _plain_apply(config), 0
    rows = mc_packing_rows([batch], num_samples, chunk)
    if packed_rows is not None:  # rows given for several batches: they must hold this one's visits
        if packed_rows and not 0 < rows <= packed_rows:
            raise ValueError(f"packed_rows={packed_rows} cannot hold this batch's real visits (it needs "
                             f"{rows or 'every slot'}): compute them with mc_packing_rows over every batch")
        rows = packed_rows
    return batch, _plain_apply(config, rows), rows


def _mask_apply(config: HAMNetConfig, apply_fn: Callable, packed: int) -> Callable:
    """The apply function the masks are drawn with: the unpacked model's when the MC pass
    packs (a one-subject batch is never packed, so its masks are the same, and one masks
    program serves every packing)."""
    return _plain_apply(config) if packed else apply_fn


def mc_packing_rows(batches: Sequence[Batch], num_samples: int, chunk: int = 256,
                    visit_slots: int | None = None) -> int:
    """Packed rows of `predict_batch`'s MC pass that hold every chunk of every batch (0: no
    packing), so several batches (a run's validation and test splits) share one compiled
    program: pass the result as their `packed_rows`."""
    most = 0
    for batch in batches:
        slots = max(visit_slots or 0, int(np.shape(batch.visit_mask)[1]))
        rows = chunked_packing_rows(batch.visit_counts(), chunk, slots)
        if not rows:
            return 0
        most = max(most, rows)
    return most * num_samples


def compile_predict_ahead(config: HAMNetConfig, params: Any, batch: Batch, num_samples: int = 20, seed: int = 0,
                          chunk: int = 256, visit_slots: int | None = None, visit_packing: bool = True,
                          packed_rows: int | None = None) -> Compiling:
    """Compile `predict_batch`'s program for `batch` (same arguments) on a background thread;
    `params` may be shapes (`jax.ShapeDtypeStruct`s) of the parameters it will get."""
    batch, apply_fn, packed = _prepared(config, batch, None, visit_slots, num_samples, chunk, visit_packing,
                                        packed_rows)
    key = jax.random.key(seed)
    mask_apply = _mask_apply(config, apply_fn, packed)

    def lower(chunk_batch: Batch) -> Any:
        masks = _masks.lower(mask_apply, params, batch.take(np.arange(1)), key, num_samples)
        masks.compile()  # (then the MC program, for masks of the shapes it gives)
        return _mc.lower(apply_fn, params, chunk_batch, masks.out_info, key, num_samples, packed)

    return compile_ahead(lower, batch, chunk, "mc-prediction")


def calibrated_outputs(stats: dict, target_mean: float, target_std: float, calibration: Calibration) -> dict:
    """Standardized statistics (`mean`, `aleatoric_std`, optional `epistemic_std`,
    `total_std` of a regression head; `probability`, optional `probability_std` of a
    classification head) -> `hamnet predict`'s outputs in target units: prediction,
    calibrated stds (multiplied by `calibration.std_scale`), the 90% interval, the
    temperature-scaled `outcome_probability` and its MC-dropout spread
    `outcome_probability_std`. Works on numpy and traced arrays alike (it runs inside
    exported graphs too)."""
    result = {}
    if "mean" in stats:
        scale = target_std * calibration.std_scale
        result["prediction"] = stats["mean"] * target_std + target_mean
        for name in ("aleatoric_std", "epistemic_std", "total_std"):
            if name in stats:
                result[name] = stats[name] * scale
        result["lower_90"] = result["prediction"] - Z90 * result["total_std"]
        result["upper_90"] = result["prediction"] + Z90 * result["total_std"]
    if "probability" in stats:
        probability, spread = tempered_probability(stats["probability"], stats.get("probability_std"),
                                                   calibration.logit_temperature, jnp)
        result["outcome_probability"] = probability
        if spread is not None:
            result["outcome_probability_std"] = spread
    return result


PRIMARY_OUTPUTS = ("prediction", "outcome_probability")


def primary_output(names: Iterable[str]) -> str:
    """The output a model is judged and monitored by: the regression `prediction`, or the
    `outcome_probability` of an outcome-only model."""
    names = set(names)
    for name in PRIMARY_OUTPUTS:
        if name in names:
            return name
    raise ValueError(f"no prediction among the outputs {sorted(names)}")
