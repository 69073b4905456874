"""Sharded training on 8 fake CPU devices (in a subprocess: the device count is fixed when
JAX starts): data parallel, FSDP and data x tensor parallel match one device, parameters
are really split, and checkpoints restore onto another mesh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hamnet_jax.errors import InputError

from ..conftest import TEST_XLA_FLAGS
from hamnet_jax.training.sharding import FSDP_MIN_SIZE, mesh_shape

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sharded_run() -> dict:
    env = dict(os.environ, XLA_FLAGS=f"{TEST_XLA_FLAGS} --xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "tests.workers.sharding_worker"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("mesh", ["fsdp", "dp_tp"])
def test_sharded_losses_match_one_device(sharded_run, mesh):
    assert sharded_run["devices"] == 8
    ref = np.asarray(sharded_run["losses"]["single"])
    got = np.asarray(sharded_run["losses"][mesh])
    assert len(got) == 20
    rel = np.abs(got - ref) / np.abs(ref)
    assert rel.max() <= 1e-5, (mesh, rel.max())


@pytest.mark.parametrize("mesh", ["single", "fsdp", "dp_tp"])
def test_the_weights_average_is_sharded_like_its_parameter(sharded_run, mesh):
    got = sharded_run["average"][mesh]
    assert got["sharded_like_params"]
    np.testing.assert_allclose(got["first_leaf"], sharded_run["average"]["single"]["first_leaf"], rtol=1e-4, atol=1e-6)


def test_fsdp_splits_every_large_parameter(sharded_run):
    large = [r for r in sharded_run["report"]["fsdp"] if np.prod(r["shape"]) >= FSDP_MIN_SIZE]
    assert large
    for r in large:
        assert np.prod(r["shard_shape"]) * 8 == np.prod(r["shape"]), r


def test_tensor_parallel_splits_hidden_units_and_heads(sharded_run):
    report = {r["param"]: r for r in sharded_run["report"]["dp_tp"]}
    fc1 = report["fusion/block_0/mlp/fc1/kernel"]
    assert fc1["shard_shape"][1] * 2 == fc1["shape"][1]
    query = report["fusion/block_0/attn/query/kernel"]
    assert query["shard_shape"][1] * 2 == query["shape"][1]
    for r in sharded_run["report"]["dp"]:  # pure data parallel: everything replicated
        assert r["shard_shape"] == r["shape"]


@pytest.mark.parametrize("target", ["dp_tp", "single"])
def test_fsdp_checkpoint_restores_on_another_mesh(sharded_run, target):
    restored = sharded_run["restore"][target]
    assert restored["max_abs_diff"] == 0.0
    assert restored["shardings_of_target_mesh"]
    assert restored["step"] == 20


@pytest.mark.parametrize("spec, devices, expect", [
    ({"data": -1}, 8, {"data": 8, "fsdp": 1, "tensor": 1}),
    ({"data": 2, "tensor": -1}, 8, {"data": 2, "fsdp": 1, "tensor": 4}),
    (None, 1, {"data": 1, "fsdp": 1, "tensor": 1}),
])
def test_mesh_shape(spec, devices, expect):
    assert mesh_shape(spec, devices) == expect


@pytest.mark.parametrize("spec, match", [
    ({"data": 3}, r"uses 3 devices but 8 are available"),
    ({"data": -1, "fsdp": -1}, r"at most one -1"),
    ({"pipeline": 2}, r"unknown axis \['pipeline'\]"),
    ({"data": 3, "fsdp": -1}, r"does not divide the 8 devices"),
])
def test_mesh_shape_errors(spec, match):
    with pytest.raises(InputError, match=match):
        mesh_shape(spec, 8)
