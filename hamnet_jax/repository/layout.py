"""The on-disk model repository that `hamnet serve`, `hamnet bench` and the pipeline share:
a directory of run directories, one folder per model, one per version.

    REPOSITORY/
      <model>/
        inference.yaml          optional: an `inference:` section (backend, precision_mode,
                                batch_size, enable_caching, ...) for every version
        ab.yaml                 optional: an A/B split of requests that name no version
        <version>/              a run directory (any kind: trained, pruned, quantized, distilled)
          model.onnx            the raw-input export the onnxruntime backend serves
          model.engine          the TensorRT engine the tensorrt backend serves

Versions are positive integers. What the server does with them (load, route, batch) is
`hamnet_jax.serving.repository`; this module only reads and writes the layout.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from hamnet_jax.yaml_text import read_yaml
from hamnet_jax.config import config_from_dict
from hamnet_jax.config.sections import InferenceSection

MODEL_FILES = {"onnxruntime": "model.onnx", "tensorrt": "model.engine"}


def model_versions(root: Path) -> dict[str, dict[str, Path]]:
    """name -> version -> run directory, as found under `root`."""
    out: dict[str, dict[str, Path]] = {}
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        versions = {v.name: v for v in model_dir.iterdir() if v.is_dir() and v.name.isdigit() and int(v.name) > 0}
        if versions:
            out[model_dir.name] = versions
    return out


def inference_options(model_dir: Path, default: InferenceSection | None) -> InferenceSection:
    path = model_dir / "inference.yaml"
    if not path.exists():
        return default or InferenceSection()
    raw = read_yaml(path.read_text()) or {}
    return config_from_dict({"inference": raw.get("inference", raw)}, str(path)).section("inference")


NOT_SERVED = ("checkpoints", "tb", "data_cache", "plots")  # what a copied version leaves out


def add_to_repository(root: Path, name: str, run_dir: Path, graph: Path | None, options: dict[str, Any],
                      copy: bool = False) -> Path:
    """`<root>/<name>/1/`: the run's files linked (`copy`: copied, less training's
    checkpoints, logs and caches, so the repository stands alone), the export (if any) as
    `model.onnx` or `model.engine`; `<root>/<name>/inference.yaml` holds `options`."""
    version = root / name / "1"
    version.mkdir(parents=True)

    def place(source: Path, target: Path) -> None:
        if not copy:
            target.symlink_to(source.resolve())
        elif source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)

    for item in Path(run_dir).iterdir():
        if not (copy and item.name in NOT_SERVED):
            place(item, version / item.name)
    if graph is not None:
        target = "model.engine" if options.get("backend") == "tensorrt" else "model.onnx"
        place(Path(graph), version / target)
        place(Path(f"{graph}.json"), version / f"{target}.json")
    (root / name / "inference.yaml").write_text(yaml.safe_dump({"inference": options}))
    return version
