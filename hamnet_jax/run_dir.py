"""A run directory and what it holds, for writing (training) and reading (evaluate,
predict, export, serving).

```
RUN_DIR/
  config.yaml        resolved run config, with the model section as trained
  schema.yaml        the data schema used (target included)
  preprocessor.npz   standardization fitted on the training split
  calibration.json   variance scale fitted on the validation split
  params/            final (best-validation) parameters, orbax
  checkpoints/       latest/ and best/ train states, orbax
  metrics.jsonl      one line per epoch
  summary.json       test-split metrics of the trained model
  tb/                TensorBoard scalars
  plots/             learning_curve.png, pred_vs_true.png
```
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp
import yaml

from hamnet_jax.config import Config, config_from_dict
from hamnet_jax.data.preprocess import Preprocessor
from hamnet_jax.data.schema import Schema
from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import write_json_atomic, write_text_atomic
from hamnet_jax.models.config import HAMNetConfig


@dataclasses.dataclass
class Run:
    """A trained run loaded from its directory."""

    path: Path
    config: Config
    model_config: HAMNetConfig
    schema: Schema
    preprocessor: Preprocessor
    params: Any
    std_scale: float


def save_config(run_dir: Path, config: Config, model_config: HAMNetConfig) -> None:
    data = config.to_dict()
    data["model"] = model_config.to_dict()
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(data, sort_keys=False))


def save_params(run_dir: Path, params: Any) -> None:
    """Orbax writes into a temporary folder and renames it: atomic."""
    target = (run_dir / "params").absolute()
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(target, params, force=True)


def save_calibration(run_dir: Path, std_scale: float) -> None:
    write_json_atomic(run_dir / "calibration.json", {"std_scale": std_scale})


def load_run(run_dir: str | Path) -> Run:
    path = Path(run_dir)
    needed = ["config.yaml", "schema.yaml", "preprocessor.npz", "params", "calibration.json"]
    missing = [n for n in needed if not (path / n).exists()]
    if missing:
        raise InputError(f"run directory {path} is not a finished run: missing {', '.join(missing)}")
    raw = yaml.safe_load((path / "config.yaml").read_text())
    model_section = raw.pop("model")
    config = config_from_dict({**raw, "model": {"tier": model_section["tier"]}}, str(path / "config.yaml"))
    model_config = HAMNetConfig.create(**model_section)
    config = dataclasses.replace(config, model=model_section)
    with ocp.StandardCheckpointer() as ckptr:
        params = ckptr.restore((path / "params").absolute())
    std_scale = float(json.loads((path / "calibration.json").read_text())["std_scale"])
    return Run(path, config, model_config, Schema.load(path / "schema.yaml"),
               Preprocessor.load(path / "preprocessor.npz"), params, std_scale)
