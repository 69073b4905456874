"""Presets of `hamnet pipeline`: a config (under the user's file and `HAMNET_*`) and the
built-in cohort the pipeline draws when no data file is given.

`quick` tours every stage on the default synthetic cohort (6,000 subjects) in under a
quarter of an hour on two CPU cores: short studies on two worker processes (4
architectures smaller than the standard tier, 2 learning-rate / weight-decay settings, at
most 2 epochs each, compiled fast), a standard-tier baseline of at most 10 epochs, the
searched model trained for up to 10, taught by the baseline for 3 more, pruned 40%
(structured) with 3 fine-tuning epochs and taught by the baseline for 3 more,
int8-quantized (dynamic), exported to ONNX, and measured deterministically (no MC
dropout) at batch 1 and 256; runs predict with 10 MC-dropout samples where they report
uncertainty. `tiny` is for tests and smoke checks: 240 subjects of narrow data, one-epoch
studies of two points each (on two worker processes), every stage on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hamnet_jax.cohort.default import DEFAULT_SUBJECTS, CohortDims
from hamnet_jax.errors import InputError

ALL_STAGES_ON = {"enable_nas": True, "enable_hyperparameter_opt": True, "enable_pruning": True,
                 "enable_distillation": True, "enable_inference_opt": True, "enable_monitoring": True,
                 "enable_benchmarking": True}


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    config: dict[str, Any]  # YAML sections, under the user's
    subjects: int  # the built-in cohort's
    dims: CohortDims = dataclasses.field(default_factory=CohortDims)
    seed: int = 0


QUICK = Preset("quick", {
    "optimization": ALL_STAGES_ON,
    "model": {"tier": "standard"},
    "training": {"num_epochs": 10, "early_stop_patience": 3, "mc_samples": 10},
    "nas": {"search_strategy": "evolutionary", "population_size": 4, "generations": 1},
    "hyperparameter_optimization": {"strategy": "random", "max_trials": 2, "max_epochs_per_trial": 2},
    "distillation": {"epochs": 3},
    "pruning": {"method": "structured", "target_sparsity": 0.4, "finetune_epochs": 3},
    "quantization": {"mode": "dynamic", "precision": "int8"},
    "inference": {"mc_samples": 0},
    "benchmarking": {"benchmark_types": ["latency", "throughput", "accuracy"], "batch_sizes": [1, 256],
                     "num_iterations": 20},
    "pipeline": {
        "search_workers": 2, "search_fast_compile": True, "export_formats": ["onnx"],
        # architectures smaller than the standard tier: the search is for a faster model. At
        # this size speed follows attention heads and tokens more than FLOPs (which the study
        # ranks by), so the space holds only few: 1-2 heads, imaging in 8 or 4 tokens, genetic
        # in 8 (groups of 256, 4 tokens, lost 4-7% MAE; of 64, 16 tokens, were slower;
        # docs/measurements.md, "The pipeline, quick preset")
        "nas_space": {"embed_dim": {"type": "choice", "options": [24, 32, 48]},
                      "num_heads": {"type": "choice", "options": [1, 2]},
                      "num_layers": {"type": "int", "low": 1, "high": 2},
                      "mlp_ratio": {"type": "choice", "options": [1, 2]},
                      "clinical_hidden_dim": {"type": "choice", "options": [32, 64]},
                      "imaging_group_size": {"type": "choice", "options": [64, 128]},
                      "genetic_group_size": {"type": "choice", "options": [128]},
                      "dropout": {"type": "float", "low": 0.0, "high": 0.2}},
        "hpo_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 6e-3, "log": True},
                      "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}}},
}, DEFAULT_SUBJECTS)

TINY = Preset("tiny", {
    "optimization": ALL_STAGES_ON,
    "model": {"tier": "base", "imaging_group_size": 16, "genetic_group_size": 16, "classification": True},
    "training": {"num_epochs": 2, "batch_size": 32, "mc_samples": 4, "eval_batch_size": 64},
    "nas": {"search_strategy": "random", "population_size": 2, "generations": 1},
    "hyperparameter_optimization": {"strategy": "random", "max_trials": 2, "max_epochs_per_trial": 1},
    "distillation": {"epochs": 1, "batch_size": 32},
    "pruning": {"method": "structured", "target_sparsity": 0.5, "finetune_epochs": 1},
    "quantization": {"mode": "dynamic", "precision": "int8"},
    "inference": {"mc_samples": 0},
    "benchmarking": {"benchmark_types": ["latency", "throughput", "accuracy"], "batch_sizes": [1, 8],
                     "num_iterations": 3},
    "pipeline": {"export_formats": ["onnx"], "search_workers": 2, "search_fast_compile": True,
                 "prune_teacher_epochs": 1,
                 "nas_space": {"embed_dim": {"type": "choice", "options": [16, 32]},
                               "num_layers": {"type": "int", "low": 1, "high": 2}},
                 "hpo_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 5e-3, "log": True}}},
}, 240, CohortDims(clinical=12, imaging=48, genetic=40, lifestyle_numeric=6), seed=3)

PRESETS = {p.name: p for p in (QUICK, TINY)}


def preset(name: str | None) -> Preset | None:
    if name is None:
        return None
    if name not in PRESETS:
        raise InputError(f"--preset {name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name]
