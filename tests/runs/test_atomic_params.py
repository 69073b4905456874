"""Parameters and checkpoints are replaced whole: a save killed between its renames leaves
the old parameters aside, and the next load or save puts them back and removes the
temporary folders a failed write left."""

from __future__ import annotations

import shutil

import jax
import numpy as np

from hamnet_jax.runs.run_dir import load_run, save_params
from hamnet_jax.training.checkpoints import Checkpoints


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_params_are_replaced_whole_and_a_killed_replacement_recovers(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = load_run(run).params
    doubled = jax.tree_util.tree_map(lambda x: x * 2, before)
    save_params(run, doubled)
    assert all(np.array_equal(a, 2 * b) for a, b in zip(_leaves(load_run(run).params), _leaves(before), strict=True))
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".params")) == []
    # killed between "old aside" and "new in place", with a half-written temporary beside it
    (run / "params").rename(run / ".params.old-4242")
    (run / ".params.tmp-4243").mkdir()
    (run / ".params.tmp-4243" / "half").write_bytes(b"x")
    recovered = load_run(run)
    assert all(np.array_equal(a, 2 * b) for a, b in zip(_leaves(recovered.params), _leaves(before), strict=True))
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".params")) == []


def test_checkpoint_leftovers_are_cleaned_when_the_writer_starts(tmp_path):
    ckpt = Checkpoints(tmp_path)
    state = {"w": np.arange(4.0, dtype=np.float32)}
    ckpt.save("latest", 3, state, {"epoch": 3})
    folder = tmp_path / "latest"
    (folder / "3").rename(folder / ".3.old-77")  # killed mid-replacement of step 3
    (folder / ".4.tmp-78").mkdir()  # a half-written step 4
    reopened = Checkpoints(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["3"] and reopened.latest_step() == 3
    restored, meta = reopened.restore("latest", state)
    assert np.array_equal(np.asarray(restored["w"]), state["w"]) and meta["epoch"] == 3
