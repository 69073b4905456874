"""A full disk (an injected ENOSPC) in each writer: the error names the path being written,
the CLI exits 74, and the last complete state stays readable."""

from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np
import pytest

from hamnet_jax.errors import DiskFullError
from hamnet_jax.io_atomic import AppendLog, write_json_atomic

def full_disk(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"mae": 1.0})
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(DiskFullError, match=f"no space left on the device writing {path}"):
        write_json_atomic(path, {"mae": 2.0})
    assert json.loads(path.read_text()) == {"mae": 1.0} and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_an_append_log_leaves_no_torn_line(tmp_path, monkeypatch):
    log = AppendLog(tmp_path / "events.jsonl")
    log.append({"n": 1})
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", full_disk)
        with pytest.raises(DiskFullError, match=f"writing {log.path}"):
            log.append({"n": 2})
    assert log.read() == [{"n": 1}] and log.skipped == []
    log.append({"n": 3})
    assert log.read() == [{"n": 1}, {"n": 3}]


def test_a_cohort_cache_build_leaves_nothing_half_built(tiny_cohort, tmp_path, monkeypatch):
    from hamnet_jax.data import cohort_cache

    data, schema = tiny_cohort
    root = tmp_path / "cohorts"
    monkeypatch.setattr(cohort_cache.np, "save", full_disk)
    key = cohort_cache.cache_key(data, schema, 4, True)
    with pytest.raises(DiskFullError, match=f"writing {root / key}"):
        cohort_cache.build_cohort_cache(data, schema, 4, True, root)
    assert [p.name for p in root.iterdir()] == [cohort_cache.LOCKS]
    monkeypatch.undo()
    cohort_cache.load_cohort_cache(cohort_cache.build_cohort_cache(data, schema, 4, True, root))


def test_a_checkpoint_keeps_the_previous_step(tmp_path, monkeypatch):
    from hamnet_jax.training import checkpoints

    ckpt = checkpoints.Checkpoints(tmp_path)
    state = {"w": np.arange(3.0, dtype=np.float32)}
    ckpt.save("latest", 1, state, {"epoch": 1})
    monkeypatch.setattr(checkpoints.np, "savez", full_disk)
    with pytest.raises(DiskFullError, match=f"writing {tmp_path / 'latest' / '2'}"):
        ckpt.save("latest", 2, {"w": state["w"] + 1}, {"epoch": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "latest").iterdir()) == ["1"]
    restored, meta = checkpoints.Checkpoints(tmp_path).restore("latest", state)
    assert meta["epoch"] == 1 and np.array_equal(np.asarray(restored["w"]), state["w"])


def test_params_keep_the_previous_ones(tiny_run, tmp_path, monkeypatch):
    import jax
    import orbax.checkpoint as ocp

    from hamnet_jax.runs.run_dir import load_run, save_params

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = jax.tree_util.tree_leaves(load_run(run).params)
    monkeypatch.setattr(ocp.StandardCheckpointer, "save", full_disk)
    with pytest.raises(DiskFullError, match=f"writing {(run / 'params').absolute()}"):
        save_params(run, {"x": np.zeros(2)})
    monkeypatch.undo()
    after = jax.tree_util.tree_leaves(load_run(run).params)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert not [p for p in run.iterdir() if p.name.startswith(".params")]


def test_the_cli_exits_74_naming_the_path(tiny_run, tiny_cohort, tmp_path, monkeypatch, capsys):
    import pandas as pd

    from hamnet_jax.cli import main

    data, _ = tiny_cohort
    out = tmp_path / "pred.csv"
    out.write_text("old predictions\n")
    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)  # the disk fills while the CSV is written
    assert main(["predict", "--run", str(tiny_run), "--data", str(data), "--out", str(out)]) == 74
    err = capsys.readouterr().err
    assert f"hamnet predict: error: no space left on the device writing {out}" in err
    assert "the last complete state is kept" in err and out.read_text() == "old predictions\n"
