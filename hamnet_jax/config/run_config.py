"""Run configuration: the original framework's `hamnet_config.yaml` + `HAMNET_*` overrides.

Every section is built by its typed schema (`sections.py`, `compression.py`), so a bad
value is an error naming `section.key`. Unknown sections and keys are errors too. Each
command says which sections and keys it uses (`Config.unused`); the CLI reports the rest
once on stderr, so a value that is accepted but has no effect never passes silently.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from hamnet_jax.yaml_text import read_yaml
from hamnet_jax.config.compression import DistillationConfig, PruningConfig, QuantizationConfig
from hamnet_jax.config.schema import build, keys
from hamnet_jax.config.sections import (
    BenchmarkingSection, DataConfig, DeploymentSection, GeneralConfig, HyperparameterSection, InferenceSection,
    MonitoringSection, NASSection, OptimizationSection, PipelineSection, RegularizationSection, TrainingConfig,
)
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import ALIASES, HAMNetConfig

TYPED = {"data": DataConfig, "training": TrainingConfig, "general": GeneralConfig}
ORIGINAL = {
    "optimization": OptimizationSection, "nas": NASSection, "hyperparameter_optimization": HyperparameterSection,
    "pruning": PruningConfig, "quantization": QuantizationConfig, "distillation": DistillationConfig,
    "regularization": RegularizationSection, "inference": InferenceSection, "deployment": DeploymentSection,
    "monitoring": MonitoringSection, "benchmarking": BenchmarkingSection, "pipeline": PipelineSection,
}
MODEL_KEYS = {f.name for f in dataclasses.fields(HAMNetConfig)} | set(ALIASES) | {"input_size", "tier"}


# `model.tier: auto` (the default): the standard tier, and below this many training subjects
# also the wide path started at its linear fit (training.wide_start: fitted), so a small
# cohort's model starts from ridge / logistic regression (measured: bench_small_data.py)
AUTO_BASE_TIER = "standard"
AUTO_SMALL_SUBJECTS = 4000


@dataclasses.dataclass(frozen=True)
class Config:
    model: dict[str, Any] = dataclasses.field(default_factory=lambda: {"tier": "auto"})
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    general: GeneralConfig = GeneralConfig()
    sections: dict[str, Any] = dataclasses.field(default_factory=dict)  # original sections given, built
    given: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # keys the user set

    def model_config(self, **data_fields: Any) -> HAMNetConfig:
        """HAMNetConfig from the `model` section, with widths taken from the data."""
        section = dict(self.model)
        tier = section.pop("tier", "auto")
        if tier == "auto":
            raise InputError("model.tier: auto is resolved from the training subjects (resolve_auto_tier) "
                             "before a model is built")
        for key, value in data_fields.items():
            if key in section and section[key] != value:
                raise InputError(f"model.{key}: the config says {section[key]!r} but the data has {value!r} "
                                 f"(the data schema decides it)")
            section[key] = value
        return HAMNetConfig.from_tier(tier, **section)

    def section(self, name: str) -> Any:
        """The original-framework section `name` as the config builds it (its defaults when
        the config does not give it)."""
        if name not in ORIGINAL:
            raise InputError(f"config: unknown section {name!r}; known sections: {sorted(ORIGINAL)}")
        return self.sections[name] if name in self.sections else build(ORIGINAL[name], None)

    def unused(self, uses: Mapping[str, Iterable[str] | None]) -> list[str]:
        """The `section.key`s the user set that a command using `uses` ignores; `uses` maps a
        section to the keys it reads (None: every key)."""
        out = []
        for name, given in self.given.items():
            if name not in uses:
                out += [f"{name}.{k}" for k in given] or [name]
                continue
            read = uses[name]
            if read is not None:
                out += [f"{name}.{k}" for k in given if k not in set(read)]
        return out

    def identity(self) -> dict[str, Any]:
        """`to_dict()` without where the job is tracked (`monitoring.mlflow_*`): the same job
        logged elsewhere is the same job, and a resume may log to another server. Keys added
        since runs were first recorded are left out while they hold the value that means what
        the runs before them did (`LATER_KEYS`), so those runs still resume and are reused."""
        out = self.to_dict()
        if "monitoring" in out:
            out["monitoring"] = {k: v for k, v in out["monitoring"].items() if not k.startswith("mlflow_")}
        for (section, key), before in LATER_KEYS.items():
            if section in out and out[section].get(key, before) == before:
                out[section].pop(key, None)
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": dict(self.model)}
        for name in ("data", "training", "general"):
            out[name] = _plain(dataclasses.asdict(getattr(self, name)))
        out.update({k: _plain(dataclasses.asdict(v)) for k, v in self.sections.items()})
        return out


# (section, key) -> the value that reproduces what runs recorded before the key existed did
LATER_KEYS: dict[tuple[str, str], Any] = {("training", "weight_average_epochs"): 0.0}


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """YAML-safe values: tuples as lists, enums as their strings."""
    def one(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [one(x) for x in v]
        if isinstance(v, str):
            return str(v)
        return v

    return {k: one(v) for k, v in d.items()}


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
STRING_KEYS = ("log_level", "output_dir", "device", "api_host")


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """`HAMNET_*` variables as {section: {key: value}}; an unknown HAMNET_ENABLE_* is an error."""
    out: dict[str, dict[str, Any]] = {}
    switches = keys(OptimizationSection)
    for var, raw in environ.items():
        if var in ENV_VARS:
            section, key = ENV_VARS[var]
        elif var.startswith("HAMNET_ENABLE_"):
            section, key = "optimization", var[len("HAMNET_"):].lower()
            if key not in switches:
                raise InputError(f"environment variable {var}: unknown switch; known: "
                                 + ", ".join("HAMNET_" + k.upper() for k in switches))
        else:
            continue
        out.setdefault(section, {})[key] = raw if key in STRING_KEYS else _coerce(raw)
    return out


def load_config(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None,
                defaults: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Config from `defaults` (a preset's sections), an optional YAML file's sections over
    them key by key, `overrides` (a caller's sections) over those, then `HAMNET_*`
    environment overrides."""
    raw: dict[str, Any] = {}
    source = "config"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.exists():
            raise InputError(f"config file {p} does not exist")
        try:
            raw = read_yaml(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise InputError(f"config file {p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise InputError(f"config file {p}: expected sections at the top level")
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in (defaults or {}).items()}
    for layer in (raw, overrides or {}):
        for section, values in layer.items():
            if isinstance(values, Mapping) and isinstance(merged.get(section), dict):
                merged[section].update(values)
            else:
                merged[section] = dict(values) if isinstance(values, Mapping) else values
    for section, values in env_overrides(os.environ if environ is None else environ).items():
        if merged.get(section) is None:
            merged[section] = {}
        if isinstance(merged[section], dict):
            merged[section].update(values)
    return config_from_dict(merged, source)


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    known = {"model"} | set(TYPED) | set(ORIGINAL)
    for name, section in raw.items():
        if name not in known:
            raise InputError(f"{source}: unknown section {name!r}; known sections: {sorted(known)}")
        if section is not None and not isinstance(section, dict):
            raise InputError(f"config section {name!r} must be a mapping of keys to values, got {section!r}")
    typed = {name: build(cls, raw.get(name)) for name, cls in TYPED.items()}
    model = dict(raw.get("model") or {})
    for key in model:
        if key not in MODEL_KEYS:
            raise InputError(f"config model.{key}: unknown key; known keys: {sorted(MODEL_KEYS)}")
    model.setdefault("tier", "auto")
    HAMNetConfig.from_tier(AUTO_BASE_TIER if model["tier"] == "auto" else model["tier"],  # validate early
                           **{k: v for k, v in model.items() if k != "tier"})
    sections = {name: build(cls, raw[name]) for name, cls in ORIGINAL.items() if name in raw}
    given = {name: tuple(raw[name] or {}) for name in raw}
    return Config(model=model, sections=sections, given=given, **typed)


def section_from_keywords(name: str, keys: dict[str, Any], source: str) -> Any:
    """An original section built from a facade's keyword arguments (enum members or their
    values), checked like the YAML section: `DeploymentConfig(mode=DeploymentMode.AUTO_SCALING)`."""
    import enum

    values = {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in keys.items()}
    return config_from_dict({name: values}, source).section(name)


def resolve_auto_tier(config: Config, train_subjects: int) -> Config:
    """`config` with `model.tier: auto` made concrete for `train_subjects` training subjects:
    the standard tier, plus `model.wide: true` and `training.wide_start: fitted` below
    AUTO_SMALL_SUBJECTS, each unless the user set it. Any other tier is returned as is."""
    if config.model.get("tier", "auto") != "auto":
        return config
    model = {**config.model, "tier": AUTO_BASE_TIER}
    training = config.training
    if train_subjects < AUTO_SMALL_SUBJECTS:
        model.setdefault("wide", True)
        if model["wide"] and "wide_start" not in config.given.get("training", ()):
            training = dataclasses.replace(training, wide_start="fitted")
    return dataclasses.replace(config, model=model, training=training)
