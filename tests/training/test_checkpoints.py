"""The train-state checkpoint writer: round trip of every leaf kind, atomic replacement,
clear errors, and checkpoints written by orbax (earlier versions) still restored."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from hamnet_jax.errors import InputError
from hamnet_jax.training.checkpoints import Checkpoints


def _state(scale: float = 1.0) -> dict:
    return {"step": jnp.int32(7), "params": {"w": jnp.arange(6.0).reshape(2, 3) * scale,
                                              "b16": jnp.full((4,), 1.5 * scale, jnp.bfloat16)},
            "key": jax.random.key(3), "none": None}


def _equal(a, b) -> bool:
    fix = lambda t: jax.tree_util.tree_map(  # noqa: E731
        lambda x: np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x), t)
    return jax.tree_util.tree_all(jax.tree_util.tree_map(
        lambda x, y: x.dtype == y.dtype and np.array_equal(x, y), fix(a), fix(b)))


def test_round_trip_keeps_every_leaf_dtype_and_meta(tmp_path):
    ckpt = Checkpoints(tmp_path)
    assert ckpt.latest_step() is None and ckpt.read_meta() is None
    ckpt.save("latest", 3, _state(), {"epoch": 3, "history": [{"val_loss": 0.5}]})
    restored, meta = ckpt.restore("latest", _state(0.0))
    assert meta == {"epoch": 3, "history": [{"val_loss": 0.5}]} == ckpt.read_meta()
    assert _equal(restored, _state())
    assert restored["params"]["b16"].dtype == jnp.bfloat16
    with pytest.raises(FileNotFoundError, match="no best checkpoint"):
        ckpt.restore("best", _state())


def test_a_new_step_replaces_the_old_and_a_torn_write_is_ignored(tmp_path):
    ckpt = Checkpoints(tmp_path)
    ckpt.save("latest", 1, _state(1.0), {"epoch": 1})
    ckpt.save("latest", 2, _state(2.0), {"epoch": 2})
    ckpt.save("latest", 2, _state(3.0), {"epoch": 2, "again": True})  # a forced re-save of one step
    (tmp_path / "latest" / ".tmp-5-123").mkdir()  # a crash mid-write leaves only a temporary folder
    assert sorted(p.name for p in (tmp_path / "latest").iterdir() if p.name.isdigit()) == ["2"]
    assert ckpt.latest_step() == 2
    restored, meta = ckpt.restore("latest", _state(0.0))
    assert meta["again"] and _equal(restored, _state(3.0))


def test_a_checkpoint_of_another_shape_is_an_error_naming_the_array(tmp_path):
    ckpt = Checkpoints(tmp_path)
    ckpt.save("best", 1, _state(), {})
    other = _state()
    other["params"]["w"] = jnp.zeros((3, 3))
    with pytest.raises(InputError, match=r"\['params'\]\['w'\] has shape \(2, 3\), this model needs \(3, 3\)"):
        ckpt.restore("best", other)
    other = _state()
    other["params"]["extra"] = jnp.zeros(2)
    with pytest.raises(InputError, match=r"no array \['params'\]\['extra'\]"):
        ckpt.restore("best", other)


def test_an_orbax_checkpoint_of_an_earlier_version_is_restored(tmp_path):
    state = {"step": jnp.int32(4), "params": {"w": jnp.arange(6.0).reshape(2, 3)}}
    opts = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False)
    mngr = ocp.CheckpointManager(tmp_path / "latest", options=opts)  # as hamnet-jax wrote them before
    mngr.save(4, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave({"epoch": 4})))
    mngr.wait_until_finished()
    mngr.close()
    ckpt = Checkpoints(tmp_path)
    assert ckpt.latest_step() == 4 and ckpt.read_meta() == {"epoch": 4}
    restored, meta = ckpt.restore("latest", jax.tree_util.tree_map(jnp.zeros_like, state))
    assert meta == {"epoch": 4} and _equal(restored, state)
