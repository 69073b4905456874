"""A training process killed with SIGKILL and restarted with --resume ends where an
uninterrupted run of the same seed ends."""

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from hamnet_jax.cohort.default import generate_cohort
from hamnet_jax.data.tables import write_table

from ..conftest import TINY_DIMS

EPOCHS = 8


def _train(data, config, out, cache, resume=False, kill_at=None):
    cmd = [sys.executable, "-m", "hamnet_jax.cli", "train", "--data", str(data), "--config", str(config),
           "--out", str(out), "--quiet"] + (["--resume"] if resume else [])
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(cache)}
    if kill_at:
        env["HAMNET_KILL_AT"] = kill_at
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _saved_epochs(run):
    latest = run / "checkpoints" / "latest"
    return [int(p.name) for p in latest.iterdir() if p.name.isdigit()] if latest.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("point", ["checkpoint.latest_saved@3", "checkpoint.best_saved@2"])
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, point):
    frame, schema = generate_cohort(500, seed=5, dims=TINY_DIMS)
    data = tmp_path / "c.parquet"
    write_table(frame, data)
    (tmp_path / "c.schema.yaml").write_text(yaml.safe_dump(schema))
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"tier": "base", "imaging_group_size": 16, "genetic_group_size": 16},
        "training": {"num_epochs": EPOCHS, "batch_size": 16, "mc_samples": 3, "early_stop_patience": 100},
    }))

    cache = tmp_path / "xla-cache"  # the later processes reuse the first one's compiled steps
    reference = _train(data, config, tmp_path / "reference", cache)
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err
    killed = _train(data, config, tmp_path / "killed", cache, kill_at=point)
    _, err = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL and f"killed at {point}" in err, err
    at_kill = max(_saved_epochs(tmp_path / "killed"))
    assert 1 <= at_kill < EPOCHS
    assert not (tmp_path / "killed" / "summary.json").exists()

    resumed = _train(data, config, tmp_path / "killed", cache, resume=True)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err

    a = json.loads((tmp_path / "killed" / "summary.json").read_text())
    b = json.loads((tmp_path / "reference" / "summary.json").read_text())
    assert a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"]
    assert a["epochs_run"] == b["epochs_run"] == EPOCHS
    hist_a = (tmp_path / "killed" / "metrics.jsonl").read_text()
    hist_b = (tmp_path / "reference" / "metrics.jsonl").read_text()
    assert hist_a == hist_b
    for name in ("calibration.json", "preprocessor.npz", "data_profile.npz"):  # the same final files, bitwise
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
