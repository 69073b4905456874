"""The public API is explicit: every subpackage of hamnet_jax names it in `__all__`, every name
there resolves, and importing a subpackage loads nothing until a name is used."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "hamnet_jax"
PACKAGES = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists())


@pytest.mark.parametrize("package", PACKAGES)
def test_each_subpackage_names_its_public_api_and_every_name_resolves(package):
    module = importlib.import_module(f"hamnet_jax.{package}")
    names = module.__all__
    assert names and len(names) == len(set(names))
    for name in names:
        assert getattr(module, name) is not None, name
    assert set(names) <= set(dir(module))
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018


def test_importing_the_subpackages_loads_no_jax():
    lazy = [p for p in PACKAGES if p != "cli"]  # (the command re-executes itself and imports its commands)
    code = (f"import sys; [__import__('hamnet_jax.' + p) for p in {lazy!r}]; "
            "print(sorted(m for m in ('jax', 'flax', 'optax', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_exported_name_is_also_a_submodule(package):
    """`from hamnet_jax.training import train_run` would give the function or the module,
    depending on what was imported before: a public name never shadows a submodule."""
    module = importlib.import_module(f"hamnet_jax.{package}")
    submodules = {p.stem for p in (ROOT / package).glob("*.py")} | {p.name for p in (ROOT / package).iterdir()
                                                                      if (p / "__init__.py").exists()}
    assert not set(module.__all__) & submodules
