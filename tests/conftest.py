"""Shared, session-scoped fixtures: a tiny cohort on disk and one tiny trained run, so the
suite compiles each model shape once."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from hamnet_jax.config import config_from_dict
from hamnet_jax.data.cohort import CohortDims, generate_cohort
from hamnet_jax.data.schema import Schema
from hamnet_jax.data.tables import write_table

# Tests run tiny models, whose time goes into compiling, not executing. Measured on the tiny
# four-modality train step (2 CPU cores): 15.1 s to compile by default, 10.6 s at LLVM
# optimization level 0, 4.7 s adding XLA:CPU's legacy fusion emitters and runtime (same
# results to float tolerance); a tiny `train_run` 43.8 s -> 33.4 s. Set before any test
# imports jax (importing hamnet_jax loads none); subprocesses the tests start inherit it,
# and add their own device-count flag to it. XLA aborts on a flag it does not know, so the
# legacy switches are probed once in a subprocess and dropped if a newer jaxlib lacks them.
FAST_COMPILE = "--xla_backend_optimization_level=0"
LEGACY_CPU_BACKEND = "--xla_cpu_use_fusion_emitters=false --xla_cpu_use_thunk_runtime=false"


def _accepted(flags: str) -> bool:
    probe = "import jax.numpy as jnp; jnp.zeros(2).block_until_ready()"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=120).returncode == 0


if "PYTEST_XDIST_WORKER" not in os.environ and "HAMNET_TEST_XLA_FLAGS" not in os.environ:
    # (the controller decides once; xdist workers and test subprocesses inherit its choice)
    legacy = f"{FAST_COMPILE} {LEGACY_CPU_BACKEND}"
    os.environ["HAMNET_TEST_XLA_FLAGS"] = legacy if _accepted(legacy) else FAST_COMPILE
TEST_XLA_FLAGS = os.environ.get("HAMNET_TEST_XLA_FLAGS", FAST_COMPILE)
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()
# One persistent compilation cache per test run, shared by the xdist workers (they inherit
# the controller's environment) and the subprocesses tests start: what one process compiled
# the others load. Never the user's ~/.cache (which `hamnet` commands use), so a local run
# starts as cold as CI does.
if "PYTEST_XDIST_WORKER" not in os.environ and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="hamnet-jax-test-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

TINY_DIMS = CohortDims(clinical=12, imaging=48, genetic=40, lifestyle_numeric=6)
TINY_CONFIG = {
    "model": {"tier": "base", "imaging_group_size": 16, "genetic_group_size": 16, "classification": True},
    "training": {"num_epochs": 2, "batch_size": 32, "mc_samples": 4, "eval_batch_size": 64},
}


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> tuple[Path, Schema]:
    root = tmp_path_factory.mktemp("cohort")
    frame, schema = generate_cohort(240, seed=3, dims=TINY_DIMS)
    path = root / "tiny.parquet"
    write_table(frame, path)
    (root / "tiny.schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    return path, Schema.from_dict(schema)


@pytest.fixture(scope="session")
def tiny_config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "hamnet_config.yaml"
    path.write_text(yaml.safe_dump(TINY_CONFIG))
    return path


TINY_RUN_EPOCHS: list[dict] = []  # what train_run's on_epoch callback got while training tiny_run


@pytest.fixture(scope="session")
def tiny_run(tiny_cohort, tmp_path_factory) -> Path:
    from hamnet_jax.training.train_run import train_run

    data, schema = tiny_cohort
    out = tmp_path_factory.mktemp("runs") / "run"
    train_run(data, schema, config_from_dict(TINY_CONFIG), out, progress=False, on_epoch=TINY_RUN_EPOCHS.append)
    return out


@pytest.fixture(scope="session")
def tiny_model_config(tiny_cohort):
    _, schema = tiny_cohort
    cfg = config_from_dict(TINY_CONFIG)
    return cfg.model_config(**{f"{m}_dim": w for m, w in schema.widths().items()},
                            lifestyle_cardinalities=schema.cardinalities())
