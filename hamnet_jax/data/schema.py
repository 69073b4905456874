"""The data schema: which columns of a user file are which modality, the target, the
subject id, the visit and its time. A small YAML file:

```yaml
subject_id: eid                # required
visit: instance                # optional: visit order within a subject (default: file order)
time: years_since_baseline     # optional: visit time in years (default: 1 year per visit)
target: age                    # regression target (the value at the last visit is used)
outcome: died                  # optional binary outcome for a classification head
modalities:                    # any subset of clinical / imaging / genetic / lifestyle
  clinical: [30000-0.0, 30600-0.0]
  lifestyle: [20116-0.0, 22040-0.0]
categorical:                   # optional: lifestyle columns that are categories, with their numeric codes
  20116-0.0: [0, 1, 2]
subject_level: [genetic]       # optional: modalities constant within a subject (genotypes):
                               # encoded once per subject and broadcast over its visits
extra: [bio_age]               # optional: columns carried along for evaluation only
```
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from hamnet_jax.yaml_text import read_yaml
from hamnet_jax.errors import InputError
from hamnet_jax.modalities import MODALITIES

SCHEMA_KEYS = {"subject_id", "visit", "time", "target", "outcome", "modalities", "categorical", "subject_level",
               "extra"}


@dataclasses.dataclass(frozen=True)
class Schema:
    subject_id: str
    modalities: dict[str, tuple[str, ...]]
    target: str | None = None
    visit: str | None = None
    time: str | None = None
    outcome: str | None = None
    categorical: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    extra: tuple[str, ...] = ()
    subject_level: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "schema") -> Schema:
        if not isinstance(raw, dict):
            raise InputError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
        unknown = sorted(set(raw) - SCHEMA_KEYS)
        if unknown:
            raise InputError(f"{source}: unknown key {unknown[0]!r}; known keys: {sorted(SCHEMA_KEYS)}")
        if not raw.get("subject_id"):
            raise InputError(f"{source}: 'subject_id' (the subject id column) is required")
        mods = raw.get("modalities") or {}
        if not isinstance(mods, dict) or not mods:
            raise InputError(f"{source}: 'modalities' must map at least one of {list(MODALITIES)} to columns")
        for m, cols in mods.items():
            if m not in MODALITIES:
                raise InputError(f"{source}: modalities.{m}: unknown modality; expected one of {list(MODALITIES)}")
            if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
                raise InputError(f"{source}: modalities.{m} must be a list of column names")
        cats = raw.get("categorical") or {}
        if not isinstance(cats, dict):
            raise InputError(f"{source}: 'categorical' must map each categorical lifestyle column to its levels, "
                             f"e.g. 'categorical: {{smoking_status: [0, 1, 2]}}'; got a {type(cats).__name__}")
        lifestyle = set(mods.get("lifestyle", []))
        for col, levels in cats.items():
            if col not in lifestyle:
                raise InputError(f"{source}: categorical.{col}: not a lifestyle column of the schema")
            if not isinstance(levels, list) or not levels:
                raise InputError(f"{source}: categorical.{col} must be a non-empty list of levels")
            bad = [lv for lv in levels if isinstance(lv, bool) or not isinstance(lv, (int, float))]
            if bad:
                raise InputError(f"{source}: categorical.{col}: level {bad[0]!r} is not a number; categories "
                                 "are numeric codes (as UK Biobank encodes them)")
        subject_level = raw.get("subject_level") or []
        if not isinstance(subject_level, list):
            raise InputError(f"{source}: 'subject_level' must be a list of modalities, e.g. 'subject_level: "
                             f"[genetic]'; got {subject_level!r}")
        for m in subject_level:
            if m not in mods:
                raise InputError(f"{source}: subject_level: {m!r} is not a modality of the schema "
                                 f"(it has {sorted(mods)})")
        seen: dict[str, str] = {}
        for m, cols in mods.items():
            for c in cols:
                if c in seen:
                    raise InputError(f"{source}: column {c!r} is listed under both {seen[c]} and {m}")
                seen[c] = m
        return cls(
            subject_id=str(raw["subject_id"]),
            modalities={m: tuple(mods.get(m, [])) for m in MODALITIES},
            target=raw.get("target"),
            visit=raw.get("visit"),
            time=raw.get("time"),
            outcome=raw.get("outcome"),
            categorical={str(c): tuple(v) for c, v in cats.items()},
            extra=tuple(raw.get("extra") or ()),
            subject_level=tuple(m for m in MODALITIES if m in subject_level),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Schema:
        path = Path(path)
        if not path.exists():
            raise InputError(f"schema file {path} does not exist")
        try:
            raw = read_yaml(path.read_text())
        except yaml.YAMLError as e:
            raise InputError(f"schema file {path}: not valid YAML ({e})") from None
        return cls.from_dict(raw, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"subject_id": self.subject_id}
        for key in ("visit", "time", "target", "outcome"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        d["modalities"] = {m: list(c) for m, c in self.modalities.items() if c}
        if self.categorical:
            d["categorical"] = {c: list(v) for c, v in self.categorical.items()}
        if self.subject_level:
            d["subject_level"] = list(self.subject_level)
        if self.extra:
            d["extra"] = list(self.extra)
        return d

    def save(self, path: str | os.PathLike) -> None:
        from hamnet_jax.io_atomic import write_text_atomic

        write_text_atomic(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    def with_target(self, target: str | None) -> Schema:
        return self if target is None else dataclasses.replace(self, target=target)

    # -- derived ------------------------------------------------------------------------
    def numeric_columns(self, modality: str) -> tuple[str, ...]:
        return tuple(c for c in self.modalities[modality] if c not in self.categorical)

    @property
    def categorical_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.modalities["lifestyle"] if c in self.categorical)

    def widths(self) -> dict[str, int]:
        return {m: len(self.numeric_columns(m)) for m in MODALITIES}

    def cardinalities(self) -> tuple[int, ...]:
        return tuple(len(self.categorical[c]) for c in self.categorical_columns)


def sidecar_path(data_path: str | os.PathLike) -> Path:
    """`cohort.parquet` -> `cohort.schema.yaml`, `my.data.csv` -> `my.data.schema.yaml`: the
    schema beside a data file (only the file's extension is replaced)."""
    p = Path(data_path)
    return p.with_name(p.stem + ".schema.yaml")
