"""`hamnet prune`, `quantize --mode qat` and `distill` run the one training loop: they take the
loop flags (--precision, --accumulation-steps, --mesh), and a job killed with SIGKILL and
restarted with --resume ends exactly where an uninterrupted job ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from hamnet_jax.cli import main

COMMANDS = {
    "prune": ["--method", "magnitude", "--sparsity", "0.5", "--epochs", "6"],
    "quantize": ["--mode", "qat", "--config", None],  # qat_epochs from the config below
    "distill": ["--ratio", "0.5", "--epochs", "6"],
}
LOOP_FLAGS = ["--accumulation-steps", "2", "--mesh", "data=1"]


def _command(name, run, data, out, config, resume=False, kill_at=None):
    args = [config if a is None else a for a in COMMANDS[name]]
    cmd = [sys.executable, "-m", "hamnet_jax.cli", name, "--run", str(run), "--data", str(data), "--out", str(out),
           "--quiet", *args, *LOOP_FLAGS] + (["--resume"] if resume else [])
    env = {**os.environ, "JAX_PLATFORMS": "cpu"} | ({"HAMNET_KILL_AT": kill_at} if kill_at else {})
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _checkpointed_epochs(out):
    try:
        return [int(p.name) for p in (out / "checkpoints").glob("**/latest/*") if p.name.isdigit()]
    except FileNotFoundError:  # orbax removed an old step while the glob walked it: look again next poll
        return []


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_sigkill_then_resume_matches_uninterrupted(name, tiny_run, tiny_cohort, tmp_path):
    data, _ = tiny_cohort
    config = tmp_path / "q.yaml"
    config.write_text("quantization:\n  qat_epochs: 6\n  batch_size: 16\n")
    config = str(config)
    reference = _command(name, tiny_run, data, tmp_path / "reference", config)
    _, err = reference.communicate(timeout=900)
    assert reference.returncode == 0, err
    killed = _command(name, tiny_run, data, tmp_path / "killed", config, kill_at="checkpoint.latest_saved@3")
    _, err = killed.communicate(timeout=900)
    assert killed.returncode == -signal.SIGKILL, err
    assert 2 <= max(_checkpointed_epochs(tmp_path / "killed")) < 6
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = _command(name, tiny_run, data, tmp_path / "killed", config, resume=True)
    _, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err
    a = json.loads((tmp_path / "killed" / "summary.json").read_text())
    b = json.loads((tmp_path / "reference" / "summary.json").read_text())
    key = "student_metrics" if name == "distill" else "optimized_metrics"
    assert a[key] == b[key]
    for file in ("calibration.json", "metrics.jsonl", "weights.safetensors"):  # the same final files, bitwise
        if (tmp_path / "reference" / file).exists():
            assert (tmp_path / "killed" / file).read_bytes() == (tmp_path / "reference" / file).read_bytes(), file
    assert a["loop"]["gradient_accumulation_steps"] == 2 and a["loop"]["mesh"] == {"data": 1}


def test_resume_without_checkpoints_says_so(tiny_run, tiny_cohort, tmp_path, capsys):
    data, _ = tiny_cohort
    for name in COMMANDS:
        out = tmp_path / name
        extra = ["--mode", "qat"] if name == "quantize" else []
        assert main([name, "--run", str(tiny_run), "--data", str(data), "--out", str(out), "--resume", *extra]) == 2
        assert "holds no checkpoints to resume from" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "t"), "--resume"]) == 2
    assert "holds no checkpoints to resume from" in capsys.readouterr().err
