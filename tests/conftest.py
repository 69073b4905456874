"""Shared, session-scoped fixtures: a tiny cohort on disk and one tiny trained run, so the
suite compiles each model shape once."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from hamnet_jax.config import config_from_dict
from hamnet_jax.cohort.default import CohortDims, generate_cohort
from hamnet_jax.data.schema import Schema
from hamnet_jax.data.tables import write_table
from hamnet_jax.search.fast_compile import LLVM_O0, fast_compile_flags

# Tests run tiny models, whose time goes into compiling, not executing: the suite compiles
# with `search.fast_compile`'s flags (a tiny `train_run` 43.8 s -> 33.4 s). Set before any
# test starts a JAX backend; subprocesses the tests start inherit them, and add their own
# device-count flag.
if "PYTEST_XDIST_WORKER" not in os.environ and "HAMNET_TEST_XLA_FLAGS" not in os.environ:
    # (the controller decides once; xdist workers and test subprocesses inherit its choice)
    os.environ["HAMNET_TEST_XLA_FLAGS"] = fast_compile_flags()
TEST_XLA_FLAGS = os.environ.get("HAMNET_TEST_XLA_FLAGS", LLVM_O0)
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()
# One persistent compilation cache per test run, shared by the xdist workers (they inherit
# the controller's environment) and the subprocesses tests start: what one process compiled
# the others load. Never the user's ~/.cache (which `hamnet` commands use), so a local run
# starts as cold as CI does.
if "PYTEST_XDIST_WORKER" not in os.environ and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="hamnet-jax-test-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
# The shared cohort cache likewise: one per test run, never the user's.
if "PYTEST_XDIST_WORKER" not in os.environ:
    os.environ["HAMNET_CACHE_DIR"] = tempfile.mkdtemp(prefix="hamnet-jax-test-cohorts-")
    atexit.register(shutil.rmtree, os.environ["HAMNET_CACHE_DIR"], ignore_errors=True)

@pytest.fixture(autouse=True)
def _root_logging_restored():
    """Each test starts with the root logger as the session had it: a CLI command's
    `logging.basicConfig` inside one test binds a handler to that test's captured stderr,
    which is closed once the test ends (a later test's log record would fail on it)."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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
    from hamnet_jax.runs.train import train_run

    data, schema = tiny_cohort
    out = tmp_path_factory.mktemp("runs") / "run"
    train_run(data, schema, config_from_dict(TINY_CONFIG), out, progress=False, on_epoch=TINY_RUN_EPOCHS.append)
    return out


@pytest.fixture(scope="session")
def tiny_splits(tiny_run, tiny_cohort):
    """The tiny run's train / val / test parts of the tiny cohort (raw cohort arrays)."""
    from hamnet_jax.data.dataset import load_cohort, split_cohort
    from hamnet_jax.runs.run_dir import load_run_config

    data, schema = tiny_cohort
    config = load_run_config(tiny_run)
    return split_cohort(load_cohort(data, schema, config.data), config.data)


@pytest.fixture(scope="session")
def tiny_model_config(tiny_cohort):
    _, schema = tiny_cohort
    cfg = config_from_dict(TINY_CONFIG)
    return cfg.model_config(**{f"{m}_dim": w for m, w in schema.widths().items()},
                            lifestyle_cardinalities=schema.cardinalities())


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 (tests/mlflow_server.py)."""
    from .mlflow_server import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri
