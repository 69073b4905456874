"""A run as one function of raw inputs: preprocessing, the model, calibrated outputs.

`RawModel` splits the computation in three parts so exporters can treat them apart
(export/onnx.py keeps `standardize` and `outputs` in float32 when the model runs in fp16
or int8):

1. `standardize`  raw arrays (inference/raw_inputs.py) -> standardized `Batch`;
2. `samples`      Batch -> `mean`, `log_var` (regression head) and / or `logits`
                  (classification head), each [K, B] under the K fixed MC-dropout mask
                  sets (models/mc_dropout.py), or [1, B] deterministic (distilled: also
                  `features` [1, B, F]);
3. `outputs`      samples -> `prediction`, `aleatoric_std`, `epistemic_std`, `total_std`,
                  `lower_90`, `upper_90` (regression head), in target units, stds
                  calibrated; `outcome_probability` and `outcome_probability_std` with a
                  classification head (the spreads: MC or distilled only).

Three ways to give the uncertainty (`uncertainty`):

* `mc`         K fixed MC-dropout mask sets: with the run's `mc_samples` and seed,
               `prediction` and every std equal `hamnet predict`'s (`predict_batch` draws
               the same masks from the same key); K passes per subject.
* `distilled`  one deterministic pass and the run's distilled MC spread
               (inference/distilled_uncertainty.py), with its own calibration: the cost
               of the deterministic model.
* `none`       deterministic (`mc_samples=0`): no spreads, `total_std` the calibrated
               aleatoric std.

`RawModel.from_run(run)` picks `distilled` when the run has it (runs trained before it
was fitted: `mc`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from hamnet_jax.data.batch import random_batch
from hamnet_jax.data.preprocess import Preprocessor
from hamnet_jax.errors import InputError
from hamnet_jax.inference.compressed import CompressedModel
from hamnet_jax.inference.calibration import Calibration
from hamnet_jax.inference.distilled_uncertainty import DistilledUncertainty, uncertainty_features
from hamnet_jax.inference.predictor import calibrated_outputs
from hamnet_jax.inference.raw_inputs import RawInputSpec, standardize
from hamnet_jax.models.mc_dropout import MASK_PROGRAM_OPTIONS, mc_samples, uses_other_dropout
from hamnet_jax.models.uncertainty import mc_masks, mc_statistics

if TYPE_CHECKING:
    from hamnet_jax.config.sections import InferenceSection
    from hamnet_jax.data.batch import Batch


class TrainedRun(Protocol):
    """What `RawModel.from_run` reads of a run (`run_dir.Run`, above inference in the layers):
    its model, preprocessor and calibration, and the config's `training` and `data` sections."""

    model: Any
    preprocessor: Preprocessor
    calibration: Calibration
    config: Any
    distilled: DistilledUncertainty | None

SAMPLE_NAMES = ("mean", "log_var", "logits")
UNCERTAINTY_MODES = ("auto", "distilled", "mc")


@dataclasses.dataclass
class RawModel:
    """`masks`: concrete keep masks per dropout site, each [K, *one-subject shape]; None
    runs the model deterministically, with the `distilled` spreads when given."""

    model: CompressedModel
    preprocessor: Preprocessor
    calibration: Calibration
    spec: RawInputSpec
    masks: tuple | None = None
    seed: int = 0
    num_samples: int = 0  # K (also when the model has no dropout site, hence no masks)
    distilled: DistilledUncertainty | None = None

    @classmethod
    def from_run(cls, run: TrainedRun, mc_samples: int | None = None, uncertainty: str = "auto") -> RawModel:
        """The run's own model. `uncertainty` (`UNCERTAINTY_MODES`): `auto` is the
        distilled spread when the run has one and `mc_samples` is not given, else MC
        dropout; `mc` draws `mc_samples` mask sets (default the run's, what `hamnet
        predict` draws; 0 = deterministic); `distilled` needs a run that has it."""
        if uncertainty not in UNCERTAINTY_MODES:
            raise InputError(f"inference.uncertainty: unknown {uncertainty!r}; expected one of "
                             f"{list(UNCERTAINTY_MODES)}")
        if uncertainty == "distilled":
            if mc_samples is not None:
                raise InputError(f"inference.mc_samples ({mc_samples}) applies to MC dropout, but "
                                 "inference.uncertainty is distilled: one deterministic pass")
            if run.distilled is None:
                raise InputError(f"inference.uncertainty distilled: run {getattr(run, 'path', '')} has no distilled "
                                 "uncertainty (trained before it was fitted); use mc")
        spec = RawInputSpec.of(run.preprocessor, run.config.data.max_visits)
        raw = cls(run.model, run.preprocessor, run.calibration, spec)
        if run.distilled is not None and mc_samples is None and uncertainty != "mc":
            return raw.with_distilled(run.distilled, run.config.training.seed)
        k = run.config.training.mc_samples if mc_samples is None else int(mc_samples)
        return raw.with_mc_samples(k, run.config.training.seed)

    @classmethod
    def from_options(cls, run: TrainedRun, options: InferenceSection) -> RawModel:
        """The run as an `inference` section serves it (its `mc_samples` and `uncertainty`)."""
        return cls.from_run(run, options.mc_samples, options.uncertainty)

    def with_distilled(self, distilled: DistilledUncertainty, seed: int = 0) -> RawModel:
        """The same model answering with one deterministic pass and `distilled` spreads."""
        return dataclasses.replace(self, masks=None, seed=seed, num_samples=0, distilled=distilled)

    def with_mc_samples(self, num_samples: int, seed: int = 0) -> RawModel:
        """The same model with K = `num_samples` fixed mask sets drawn as `predict_batch`
        draws them for `seed` (0 = deterministic)."""
        if num_samples < 0:
            raise InputError(f"mc_samples must be >= 0 (0 = deterministic), got {num_samples}")
        if num_samples == 0:
            return dataclasses.replace(self, masks=None, seed=seed, num_samples=0, distilled=None)
        apply, params = self.model.apply_fn(), self.model.params
        example = random_batch(self.model.config, 1, self.spec.max_visits)
        masks = jax.jit(lambda p, b: mc_masks(apply, p, b, jax.random.key(seed), num_samples),
                        compiler_options=MASK_PROGRAM_OPTIONS)(params, example)
        return dataclasses.replace(self, masks=tuple(np.asarray(m) for m in masks), seed=seed,
                                   num_samples=int(num_samples), distilled=None)

    def float32(self) -> RawModel:
        """The same model computing in float32 on float weights (an int8 run's dequantized
        ones: its weight-only computation): what ONNX export traces, and its reference."""
        config = self.model.config.replace(dtype="float32")
        params = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float32), self.model.float_params())
        return dataclasses.replace(self, model=CompressedModel(config, params))

    @property
    def mc_samples(self) -> int:
        return 0 if self.masks is None else self.num_samples

    @property
    def uncertainty(self) -> str:
        """How the spreads are given: `mc`, `distilled` or `none` (module docstring)."""
        return "mc" if self.masks is not None else "distilled" if self.distilled is not None else "none"

    @property
    def has_outcome(self) -> bool:
        return bool(self.model.config.classification)

    @property
    def has_regression(self) -> bool:
        return bool(self.model.config.regression)

    @property
    def sample_names(self) -> tuple[str, ...]:
        names = SAMPLE_NAMES[:2] * self.has_regression + SAMPLE_NAMES[2:] * self.has_outcome
        return names + ("features",) * (self.uncertainty == "distilled")

    @property
    def output_names(self) -> tuple[str, ...]:
        mc = self.uncertainty != "none"
        names: tuple[str, ...] = ()
        if self.has_regression:
            names += ("prediction", "aleatoric_std") + ("epistemic_std",) * mc + ("total_std", "lower_90", "upper_90")
        if self.has_outcome:
            names += ("outcome_probability",) + ("outcome_probability_std",) * mc
        return names

    def exportable(self) -> None:
        """Raise unless every random draw of MC mode is one of the fixed masks."""
        if self.masks is not None and uses_other_dropout(self.model.config):
            raise InputError("model: attention_dropout > 0 or information_bottleneck draws noise outside the fixed "
                             "dropout masks, so MC mode cannot be exported; export with --mc-samples 0")

    # -- the three parts ---------------------------------------------------------------------
    def standardize(self, raw: Mapping[str, Any]) -> Batch:
        return standardize(raw, self.preprocessor, self.spec)

    def samples(self, batch: Batch, params: Any = None, apply: Callable | None = None) -> dict:
        """Per-sample model outputs [K, B] (K = 1 deterministic). `params` / `apply`
        default to the run's own (exporters pass float32 versions)."""
        apply = apply or self.model.apply_fn()
        params = self.model.params if params is None else params
        if self.masks is None:
            out, aux = apply({"params": params}, batch, deterministic=True)
            if self.distilled is not None:
                out = {**out, "features": uncertainty_features(out, aux)}
            out = {k: v[None] for k, v in out.items()}
        else:
            masks = tuple(jnp.asarray(m) for m in self.masks)
            other = uses_other_dropout(self.model.config)  # only then any RNG op in the pass
            out = mc_samples(apply, params, batch, masks,
                             jax.random.split(jax.random.key(self.seed))[1] if other else None, self.num_samples)
        return {k: out[k].astype(jnp.float32) for k in self.sample_names}

    def outputs(self, samples: Mapping[str, Any]) -> dict:
        calibration = self.calibration
        if self.uncertainty == "distilled":
            stats, calibration = self.distilled.statistics(samples), self.distilled.calibration
        elif self.masks is None:
            stats = {}
            if "mean" in samples:
                std = jnp.exp(0.5 * samples["log_var"][0])
                stats = {"mean": samples["mean"][0], "aleatoric_std": std, "total_std": std}
            if "logits" in samples:
                stats["probability"] = jax.nn.sigmoid(samples["logits"][0])
        else:
            stats = mc_statistics(dict(samples))
        pre = self.preprocessor
        out = calibrated_outputs(stats, pre.target_mean, pre.target_std, calibration)
        return {k: out[k] for k in self.output_names}

    def __call__(self, raw: Mapping[str, Any]) -> dict:
        return self.outputs(self.samples(self.standardize(raw)))
