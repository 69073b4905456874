"""A quiet terminal: `hamnet` commands print their own lines; a warning another library raises
goes to the log at DEBUG, one hamnet_jax raises still prints, and `-W` restores Python's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import logging, sys, warnings
import nevergrad as ng
logging.basicConfig(level=sys.argv[1], format="%(levelname)s %(name)s: %(message)s")
from hamnet_jax.cli.third_party_warnings import log_third_party_warnings
log_third_party_warnings()
ng.families.EvolutionStrategy(popsize=4)(ng.p.Scalar(), budget=4)  # nevergrad: ES with budget < 60
warnings.warn_explicit("ours", UserWarning, "{package}/data/dataset.py", 1)
"""


def run_script(level: str, *python_flags: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"} | {"PYTHONPATH": str(ROOT)}
    script = SCRIPT.format(package=ROOT / "hamnet_jax")
    done = subprocess.run([sys.executable, *python_flags, "-c", script, level], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_another_librarys_warning_is_logged_at_debug_and_ours_still_prints():
    quiet = run_script("INFO")
    assert "InefficientSettingsWarning" not in quiet
    assert "UserWarning: ours" in quiet
    verbose = run_script("DEBUG")
    assert "DEBUG hamnet_jax.third_party:" in verbose and "InefficientSettingsWarning" in verbose


def test_warnings_the_user_asked_for_print_as_python_prints_them():
    assert "InefficientSettingsWarning: ES algorithms are inefficient" in run_script("INFO", "-W", "default")


def test_hamnet_train_and_export_print_no_third_party_lines(tiny_cohort, tmp_path):
    """stderr at the default log level holds only hamnet's own lines (fd 2, C++ libraries
    included: XLA's flag warnings, ONNX Runtime's shape-merge log)."""
    data, _ = tiny_cohort
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("HAMNET_LOG_LEVEL", "PYTHONWARNINGS")}
    for args in (["train", "--data", str(data), "--tier", "base", "--epochs", "1", "--out", str(run), "--quiet"],
                 ["export", "--run", str(run), "--out", str(tmp_path / "m.onnx"), "--raw-inputs"]):
        done = subprocess.run([sys.executable, "-m", "hamnet_jax.cli", *args], env=env, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", (args[0], done.stderr)
