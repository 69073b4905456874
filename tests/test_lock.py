"""The lock (`uv.lock`) agrees with pyproject.toml: the check passes on the committed pair and
fails on a copy whose pyproject gained a dependency the lock was not refreshed for."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
uv = pytest.importorskip("uv", reason="uv (the dev extra) runs the lock check")


def lock_check(project: Path, offline: bool) -> subprocess.CompletedProcess:
    """`uv lock --check`. An unchanged lock is validated offline; a changed requirement is
    resolved against the index (offline, uv can only say the resolution failed)."""
    return subprocess.run([uv.find_uv_bin(), "lock", "--check", "--no-progress", *(["--offline"] if offline else [])],
                          cwd=project, capture_output=True, text=True, timeout=300)


def test_the_committed_lock_agrees_with_pyproject():
    result = lock_check(ROOT, offline=True)
    assert result.returncode == 0, result.stderr


def test_a_dependency_added_without_refreshing_the_lock_fails_the_check(tmp_path):
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    text = (tmp_path / "pyproject.toml").read_text()
    line = '  "psutil>=5.9",\n'
    assert line in text
    (tmp_path / "pyproject.toml").write_text(text.replace(line, line + '  "packaging>=20",\n'))
    assert lock_check(tmp_path, offline=True).returncode != 0  # (offline: "no solution found")
    result = lock_check(tmp_path, offline=False)
    if result.returncode != 0 and "needs to be updated" not in result.stderr and (
            "Failed to fetch" in result.stderr or "network" in result.stderr.lower()):
        pytest.skip(f"the package index is unreachable, so uv cannot resolve the changed requirement: "
                    f"{result.stderr.strip().splitlines()[-1]}")
    assert result.returncode != 0
    assert "needs to be updated" in result.stderr, result.stderr


def test_the_pipeline_extra_installs_what_its_stages_import():
    """`hamnet pipeline` runs search (nevergrad, scikit-learn), export (jax2onnx, onnxruntime),
    the monitoring stage (prometheus-client) and checks the repository through the served
    model over gRPC (grpcio, tritonclient): README command 1 installs only this extra."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def expanded(name: str) -> set[str]:
        out = set()
        for requirement in extras[name]:
            if requirement.startswith("hamnet-jax["):
                for inner in requirement[len("hamnet-jax["):-1].split(","):
                    out |= expanded(inner)
            else:
                out.add(requirement.split("[")[0].split(">")[0].split("=")[0].strip())
        return out

    assert {"nevergrad", "scikit-learn", "jax2onnx", "onnxruntime", "prometheus-client", "grpcio",
            "tritonclient"} <= expanded("pipeline")
