"""Run configuration: the original framework's `hamnet_config.yaml` + `HAMNET_*` overrides.

Sections `model`, `data`, `training` and `general` drive what this version does. The
original sections `optimization`, `nas`, `hyperparameter_optimization`, `pruning`,
`quantization`, `distillation`, `regularization`, `inference`, `deployment`, `monitoring`
and `benchmarking` are accepted and validated key by key; those whose features are not
built yet are noted as ignored. Unknown sections and keys are errors naming both.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from hamnet_jax.compression.configs import PruningConfig, QuantizationConfig
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import ALIASES, HAMNetConfig

# keys of the original framework's sections, from its documentation
ORIGINAL_SECTIONS: dict[str, tuple[str, ...]] = {
    "optimization": ("enable_nas", "enable_hyperparameter_opt", "enable_pruning", "enable_distillation",
                     "enable_regularization", "enable_training_opt", "enable_inference_opt",
                     "enable_monitoring", "enable_benchmarking"),
    "nas": ("search_strategy", "max_layers", "min_layers", "population_size", "generations",
            "mutation_rate", "crossover_rate"),
    "hyperparameter_optimization": ("strategy", "max_trials", "max_epochs_per_trial", "early_stop_patience"),
    "pruning": tuple(f.name for f in dataclasses.fields(PruningConfig)),
    "quantization": tuple(f.name for f in dataclasses.fields(QuantizationConfig)),
    "distillation": ("method", "temperature", "alpha", "intermediate_features", "attention_maps"),
    "regularization": ("dropout_rate", "weight_decay", "label_smoothing", "mixup_alpha", "enabled_techniques"),
    "inference": ("backend", "precision_mode", "batch_size", "dynamic_batching", "enable_caching"),
    "deployment": ("environment", "mode", "api_host", "api_port", "enable_monitoring", "min_instances",
                   "max_instances"),
    "monitoring": ("log_level", "enable_metrics", "enable_alerting", "enable_ab_testing"),
    "benchmarking": ("benchmark_types", "num_iterations", "batch_sizes", "output_dir", "enable_profiling",
                     "monitor_hardware"),
}


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    batch_size: int = 128
    learning_rate: float = 2e-3
    num_epochs: int = 40
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    grad_clip_norm: float = 1.0
    early_stop_patience: int = 8
    loss: str = "gaussian_nll"
    classification_weight: float = 1.0
    seed: int = 0
    mc_samples: int = 20
    eval_batch_size: int = 512
    # training optimization (the original framework's names; see training/strategies.py)
    precision_mode: str = "fp32"  # fp32 | bf16 | fp16 (dynamic loss scaling) | mixed
    param_dtype: str = "float32"  # storage dtype of weights (biases and norms stay float32)
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: str = "none"  # none | full | save_dots (true = full)
    memory_efficient_attention: str = "naive"  # naive | dot_product | blockwise (true = dot_product)
    enabled_strategies: tuple[str, ...] = ()
    mesh: dict = dataclasses.field(default_factory=lambda: {"data": -1})  # data / fsdp / tensor sizes
    bucket_by_visits: bool = False  # dynamic batching: batches of similar visit counts, trimmed
    memory_budget_mb: float = 0.0  # > 0: batch size = largest that fits, at most batch_size

    def __post_init__(self) -> None:
        from hamnet_jax.training.losses import REGRESSION_LOSSES
        from hamnet_jax.training.precision import PrecisionMode
        from hamnet_jax.training.strategies import resolve_training_options

        resolved = resolve_training_options(dataclasses.asdict(self))
        resolved["precision_mode"] = PrecisionMode.parse(resolved["precision_mode"]).value
        for key, value in resolved.items():
            object.__setattr__(self, key, value)
        if self.param_dtype not in ("float32", "bfloat16", "float16"):
            raise InputError(f"training.param_dtype: expected float32, bfloat16 or float16, got {self.param_dtype!r}")
        if self.gradient_accumulation_steps < 1:
            raise InputError(f"training.gradient_accumulation_steps: must be >= 1, got "
                             f"{self.gradient_accumulation_steps}")
        if self.memory_budget_mb < 0:
            raise InputError(f"training.memory_budget_mb: must be >= 0, got {self.memory_budget_mb}")

        for name in ("batch_size", "num_epochs", "mc_samples", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"training.{name}: must be >= 1, got {getattr(self, name)}")
        if self.early_stop_patience < 0:
            raise InputError(f"training.early_stop_patience: must be >= 0, got {self.early_stop_patience}")
        if not self.learning_rate > 0:
            raise InputError(f"training.learning_rate: must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0 or self.grad_clip_norm <= 0 or self.warmup_epochs < 0:
            raise InputError("training.weight_decay / warmup_epochs must be >= 0 and grad_clip_norm > 0")
        if self.loss not in REGRESSION_LOSSES:
            raise InputError(f"training.loss: unknown loss {self.loss!r}; expected one of {REGRESSION_LOSSES}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    max_visits: int = 4

    def __post_init__(self) -> None:
        split = tuple(float(x) for x in self.split)
        object.__setattr__(self, "split", split)
        if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1) > 1e-6 or split[0] == 0:
            raise InputError(f"data.split: expected three fractions (train, val, test) summing to 1, got {split}")
        if self.max_visits < 1:
            raise InputError(f"data.max_visits: must be >= 1, got {self.max_visits}")


@dataclasses.dataclass(frozen=True)
class GeneralConfig:
    log_level: str = "INFO"
    output_dir: str = "runs"
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise InputError(f"general.log_level: unknown level {self.log_level!r}")
        if self.device.lower() not in ("auto", "cpu", "gpu", "cuda", "tpu"):
            raise InputError(f"general.device: expected auto, cpu, gpu/cuda or tpu, got {self.device!r}")


@dataclasses.dataclass(frozen=True)
class Config:
    model: dict[str, Any] = dataclasses.field(default_factory=lambda: {"tier": "standard"})
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    general: GeneralConfig = GeneralConfig()
    sections: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def model_config(self, **data_fields: Any) -> HAMNetConfig:
        """HAMNetConfig from the `model` section, with widths taken from the data."""
        section = dict(self.model)
        tier = section.pop("tier", "standard")
        for key, value in data_fields.items():
            if key in section and section[key] != value:
                raise InputError(f"model.{key}: the config says {section[key]!r} but the data has {value!r} "
                                 f"(modality width does not match the data schema)")
            section[key] = value
        return HAMNetConfig.from_tier(tier, **section)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": dict(self.model)}
        for name in ("data", "training", "general"):
            d = dataclasses.asdict(getattr(self, name))
            out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        out.update({k: dict(v) for k, v in self.sections.items()})
        return out


SWITCH_KEYS = ("gradient_checkpointing", "memory_efficient_attention")  # bool or a name
TYPED = {"data": DataConfig, "training": TrainingConfig, "general": GeneralConfig}
MODEL_KEYS = {f.name for f in dataclasses.fields(HAMNetConfig)} | set(ALIASES) | {"input_size"}


def _coerce(value: str) -> Any:
    """An environment string as bool, int, float or str, in that order of preference."""
    low = value.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


ENV_VARS: dict[str, tuple[str, str]] = {
    "HAMNET_LOG_LEVEL": ("general", "log_level"),
    "HAMNET_OUTPUT_DIR": ("general", "output_dir"),
    "HAMNET_DEVICE": ("general", "device"),
    "HAMNET_BATCH_SIZE": ("training", "batch_size"),
    "HAMNET_LEARNING_RATE": ("training", "learning_rate"),
    "HAMNET_NUM_EPOCHS": ("training", "num_epochs"),
    "HAMNET_API_HOST": ("deployment", "api_host"),
    "HAMNET_API_PORT": ("deployment", "api_port"),
}


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """`HAMNET_*` variables as {section: {key: value}}; an unknown HAMNET_ENABLE_* is an error."""
    out: dict[str, dict[str, Any]] = {}
    for var, raw in environ.items():
        if var in ENV_VARS:
            section, key = ENV_VARS[var]
        elif var.startswith("HAMNET_ENABLE_"):
            section, key = "optimization", var[len("HAMNET_"):].lower()
            if key not in ORIGINAL_SECTIONS["optimization"]:
                raise InputError(f"environment variable {var}: unknown switch; known: "
                                 + ", ".join("HAMNET_" + k.upper() for k in ORIGINAL_SECTIONS["optimization"]))
        else:
            continue
        value = _coerce(raw) if key not in ("log_level", "output_dir", "device", "api_host") else raw
        out.setdefault(section, {})[key] = value
    return out


def _check_keys(section: str, raw: dict[str, Any], known: Iterable[str]) -> None:
    """Every key of `raw` must be known; the error names the key and the section."""
    known = set(known)
    for key in raw:
        if key not in known:
            raise InputError(f"config section {section!r}: unknown key {key!r}; known keys: {sorted(known)}")


def _typed_section(name: str, cls: type, raw: dict[str, Any]) -> Any:
    _check_keys(name, raw, (f.name for f in dataclasses.fields(cls)))
    values = {}
    for key, value in raw.items():
        default = getattr(cls(), key)
        want = type(default)
        try:
            if want is tuple:
                value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            elif want is dict and not isinstance(value, dict):
                raise TypeError
            elif want is str and key in SWITCH_KEYS and isinstance(value, bool):
                value = str(value).lower()
            elif want is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
            elif want is not type(value):
                value = want(_coerce(str(value))) if want is not str else str(value)
                if want is int and isinstance(value, float) and not value.is_integer():
                    raise ValueError
        except (TypeError, ValueError):
            raise InputError(f"config {name}.{key}: expected {want.__name__}, got {raw[key]!r}") from None
        values[key] = value
    return cls(**values)


def load_config(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Config from an optional YAML file, then `HAMNET_*` environment overrides."""
    raw: dict[str, Any] = {}
    source = "config"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.exists():
            raise InputError(f"config file {p} does not exist")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise InputError(f"config file {p}: not valid YAML ({e})") from None
        if not isinstance(raw, dict):
            raise InputError(f"config file {p}: expected sections at the top level")
    merged = {k: dict(v or {}) if isinstance(v, dict) or v is None else v for k, v in raw.items()}
    for section, values in env_overrides(os.environ if environ is None else environ).items():
        merged.setdefault(section, {}).update(values)
    return config_from_dict(merged, source)


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    known_sections = {"model"} | set(TYPED) | set(ORIGINAL_SECTIONS)
    notes: list[str] = []
    typed: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for name, section in raw.items():
        if name not in known_sections:
            raise InputError(f"{source}: unknown section {name!r}; known sections: {sorted(known_sections)}")
        if section is not None and not isinstance(section, dict):
            raise InputError(f"{source}: section {name!r} must be a mapping of keys to values")
    for name, cls in TYPED.items():
        typed[name] = _typed_section(name, cls, raw.get(name) or {})
    model = dict(raw.get("model") or {})
    _check_keys("model", model, MODEL_KEYS)
    model.setdefault("tier", "standard")
    HAMNetConfig.from_tier(model["tier"], **{k: v for k, v in model.items() if k != "tier"})  # validate early
    for name, keys in ORIGINAL_SECTIONS.items():
        if name not in raw:
            continue
        _check_keys(name, raw[name] or {}, keys)
        sections[name] = dict(raw[name] or {})
        if name == "pruning":
            PruningConfig.from_section(sections[name])  # values checked now, used by `hamnet prune`
        elif name == "quantization":
            QuantizationConfig.from_section(sections[name])  # used by `hamnet quantize`
        elif name not in ("deployment", "optimization", "monitoring"):
            notes.append(f"section {name!r} is accepted and validated but not used by training")
    return Config(model=model, sections=sections, notes=tuple(notes), **typed)
