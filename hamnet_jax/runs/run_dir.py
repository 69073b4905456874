"""A run directory and what it holds, for writing (training) and reading (evaluate,
predict, export, serving).

```
RUN_DIR/
  config.yaml        resolved run config, with the model section as trained
  schema.yaml        the data schema used (target included)
  preprocessor.npz   standardization fitted on the training split
  calibration.json   interval scale and outcome temperature fitted on the validation split
  distilled_uncertainty.json  the MC-dropout spread from one deterministic pass, with its
                     own calibration (inference/distilled_uncertainty.py)
  data_profile.npz   the training split's feature distributions and the validation
                     predictions' (data/profile.py), for drift checks
  params/            final (best-validation) parameters, orbax (trained runs)
  weights.safetensors  instead of params/ in a pruned / quantized run: the compressed
                     weights themselves (int8 or 4-bit codes + scales, sparse layers as
                     bitmap + values); compression.json says how they execute
  checkpoints/       latest/ and best/ train states (training/checkpoints.py)
  metrics.jsonl      one line per epoch
  summary.json       test-split metrics of the trained model
  tb/                TensorBoard scalars
  plots/             learning_curve.png, pred_vs_true.png
```
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp
import yaml

from hamnet_jax.yaml_text import read_yaml
from hamnet_jax.config import Config, config_from_dict
from hamnet_jax.export.compressed_checkpoint import load_compressed, save_compressed
from hamnet_jax.inference.compressed import CompressedModel
from hamnet_jax.inference.calibration import Calibration
from hamnet_jax.data.preprocess import Preprocessor
from hamnet_jax.data.schema import Schema
from hamnet_jax.errors import InputError
from hamnet_jax.inference.distilled_uncertainty import DistilledUncertainty
from hamnet_jax.io_atomic import (disk_full_names, recover_directories, replace_directory, temporary_directory,
                                  write_json_atomic, write_text_atomic)
from hamnet_jax.models.config import HAMNetConfig


@dataclasses.dataclass
class Run:
    """A trained run loaded from its directory."""

    path: Path
    config: Config
    model_config: HAMNetConfig
    schema: Schema
    preprocessor: Preprocessor
    params: Any  # float params (dequantized for an int8 run)
    calibration: Calibration
    model: CompressedModel | None = None  # the execution path: int8 codes + scales, or float params
    distilled: DistilledUncertainty | None = None  # its MC spread from one pass (runs trained before: none)

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = CompressedModel(self.model_config, self.params)


def save_config(run_dir: Path, config: Config, model_config: HAMNetConfig) -> None:
    data = config.to_dict()
    data["model"] = model_config.to_dict()
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(data, sort_keys=False))


def save_params(run_dir: Path, params: Any) -> None:
    """Orbax writes the parameters into a fresh temporary folder, which then replaces
    `params/` (`io_atomic.replace_directory`): a crash at any point leaves the old
    parameters or the new ones, and the next save or load cleans up what it left."""
    target = (run_dir / "params").absolute()
    recover_directories(target.parent)
    tmp = temporary_directory(target)
    tmp.rmdir()  # (orbax creates the folder it writes)
    try:
        with disk_full_names(target), ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp, params)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # (the previous params/ stays)
        raise
    replace_directory(tmp, target)


WEIGHTS_FILE = "weights.safetensors"
COMPRESSION_FILE = "compression.json"


def save_compressed_model(run_dir: Path, model: CompressedModel) -> int:
    """The compressed weights of a pruned / quantized run (atomic); returns their bytes."""
    size = save_compressed(run_dir / WEIGHTS_FILE, model.params, model.quant, model.bits)
    write_json_atomic(run_dir / COMPRESSION_FILE, {"execution": model.mode, "weights": WEIGHTS_FILE})
    return size


def load_compressed_model(run_dir: Path, config: HAMNetConfig) -> CompressedModel:
    codes, scales, bits = load_compressed(run_dir / WEIGHTS_FILE)
    mode = json.loads((run_dir / COMPRESSION_FILE).read_text())["execution"]
    if mode is None:
        return CompressedModel(config, codes)
    return CompressedModel(config, codes, scales, bits, mode)


def save_calibration(run_dir: Path, calibration: Calibration) -> None:
    write_json_atomic(run_dir / "calibration.json", calibration.to_dict())


DISTILLED_FILE = "distilled_uncertainty.json"


def save_distilled(run_dir: Path, distilled: DistilledUncertainty) -> None:
    write_json_atomic(run_dir / DISTILLED_FILE, distilled.to_dict())


def load_distilled(run_dir: Path) -> DistilledUncertainty | None:
    path = run_dir / DISTILLED_FILE
    if not path.exists():
        return None
    try:
        return DistilledUncertainty.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: {e}") from None


def load_run_config(run_dir: str | Path) -> Config:
    """The run's resolved config (its model section as trained)."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise InputError(f"run directory {Path(run_dir)} is not a run: missing config.yaml")
    raw = read_yaml(path.read_text())
    model_section = raw.pop("model")
    config = config_from_dict({**raw, "model": {"tier": model_section["tier"]}}, str(path))
    return dataclasses.replace(config, model=model_section)


def load_run(run_dir: str | Path) -> Run:
    path = Path(run_dir)
    if os.access(path, os.W_OK):  # a save killed between its renames: its old params put back
        recover_directories(path)
    weights = ["params"] if not (path / COMPRESSION_FILE).exists() else [WEIGHTS_FILE]
    needed = ["config.yaml", "schema.yaml", "preprocessor.npz", *weights, "calibration.json"]
    missing = [n for n in needed if not (path / n).exists()]
    if missing:
        raise InputError(f"run directory {path} is not a finished run: missing {', '.join(missing)}")
    config = load_run_config(path)
    model_config = HAMNetConfig.create(**config.model)
    if weights == [WEIGHTS_FILE]:
        model = load_compressed_model(path, model_config)
        params = model.float_params()
    else:
        with ocp.StandardCheckpointer() as ckptr:
            params = ckptr.restore((path / "params").absolute())
        model = None
    calibration = Calibration.from_dict(json.loads((path / "calibration.json").read_text()))
    return Run(path, config, model_config, Schema.load(path / "schema.yaml"),
               Preprocessor.load(path / "preprocessor.npz"), params, calibration, model, load_distilled(path))
