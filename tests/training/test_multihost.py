"""Two processes joined by `jax.distributed` on 127.0.0.1 (2 CPU devices each) train the
same model with `fit()`; both end with identical parameters, equal to one process with 4
devices, each having read only its own half of every batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hamnet_jax.errors import InputError

from ..conftest import TEST_XLA_FLAGS
from hamnet_jax.training.distributed import initialize_distributed

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(count: int, pid: int, out: Path, port: int) -> subprocess.Popen:
    devices = 4 // count
    env = dict(os.environ, XLA_FLAGS=f"{TEST_XLA_FLAGS} --xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "tests.workers.multihost_worker", str(port), str(count),
                             str(pid), str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> str:
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    return stdout


@pytest.mark.slow
def test_two_processes_train_identical_params(tmp_path):
    port = _free_port()
    multi = tmp_path / "multi"
    procs = [_worker(2, pid, multi, port) for pid in (0, 1)]
    outputs = [_finish(p) for p in procs]
    assert all("4 devices" in o for o in outputs)
    _finish(_worker(1, 0, tmp_path / "single", port))
    p0 = np.load(multi / "params_2_0.npz")
    p1 = np.load(multi / "params_2_1.npz")
    ref = np.load(tmp_path / "single" / "params_1_0.npz")
    assert sorted(p0.files) == sorted(p1.files) == sorted(ref.files)
    for name in p0.files:
        np.testing.assert_array_equal(p0[name], p1[name], err_msg=name)
        if name.endswith(("key/bias", "score/bias")):
            # softmax is shift-invariant: these gradients are exactly 0 in exact arithmetic, so
            # Adam turns reduction-order rounding noise into +-lr steps that change no output
            continue
        np.testing.assert_allclose(p0[name], ref[name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert (multi / "checkpoints" / "latest").exists()
    # each process read only the half of every global batch its devices hold
    rows = [np.load(multi / f"rows_2_{pid}.npy") for pid in (0, 1)]
    single = np.load(tmp_path / "single" / "rows_1_0.npy")
    assert rows[0].shape == rows[1].shape == (single.shape[0], 8) and single.shape[1] == 16
    np.testing.assert_array_equal(np.concatenate(rows, axis=1), single)


@pytest.mark.parametrize("kwargs, environ, match", [
    ({"coordinator_address": "127.0.0.1:1234"}, {}, r"missing: number of processes, process id"),
    ({}, {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
     r"JAX_NUM_PROCESSES: expected an integer, got 'two'"),
    ({"coordinator_address": "h:1", "num_processes": 2, "process_id": 2}, {}, r"process id 2 is not in \[0, 2\)"),
])
def test_distributed_setup_errors(kwargs, environ, match):
    with pytest.raises(InputError, match=match):
        initialize_distributed(**kwargs, environ=environ)


def test_single_process_needs_no_setup():
    assert initialize_distributed(environ={}) is False
