"""Run in a subprocess with 8 fake CPU devices (XLA_FLAGS set by the test): trains 20
steps on several meshes, saves a sharded checkpoint and restores it onto other meshes.
Prints one JSON object for tests/training/test_sharding.py."""

from __future__ import annotations

import json
import sys
import tempfile

import jax
import numpy as np

from hamnet_jax.data.batch import random_batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.training.checkpoints import Checkpoints
from hamnet_jax.training.precision import PrecisionPolicy
from hamnet_jax.training.sharded_setup import host_params, setup_sharded_training
from hamnet_jax.training.sharding import make_mesh, sharding_report
from hamnet_jax.training.state import OptimizerConfig
from hamnet_jax.training.weight_averaging import weight_average_state

# two modalities (a dense and a token encoder): every sharded kind of layer, at about 60% of the
# four-modality step's compile time (sharded compiles dominate this worker)
CONFIG = HAMNetConfig.from_tier("base", clinical_dim=12, imaging_dim=40, genetic_dim=0, lifestyle_dim=0,
                                imaging_group_size=16)
MESHES = {"single": None, "fsdp": {"fsdp": 8}, "dp_tp": {"data": 4, "tensor": 2}}
# trained on too: data parallelism is measured inside dp_tp (4-way data x 2-way tensor); the
# pure 8-way data mesh only has its parameter layout reported (a fourth step compile is ~20 s)
LAYOUT_ONLY = {"dp": {"data": 8}}
STEPS = 20


def setup(mesh_spec):
    devices = jax.devices()[:1] if mesh_spec is None else None
    mesh = make_mesh(mesh_spec, devices)
    # with the weights' moving average: it is sharded like its parameter and restores with them
    opt = OptimizerConfig(learning_rate=1e-3, warmup_steps=5, total_steps=STEPS, average_decay=0.9)
    return setup_sharded_training(HAMNet(CONFIG), random_batch(CONFIG, 2, 3), opt, PrecisionPolicy(), mesh, seed=0)


def report(params):
    return [dict(r, shape=list(r["shape"]), shard_shape=list(r["shard_shape"])) for r in sharding_report(params)]


def train(mesh_spec):
    state, setup_ = setup(mesh_spec)
    losses = []
    for i in range(STEPS):
        state, m = setup_.train_step(state, random_batch(CONFIG, 32, 3, seed=100 + i), i)
        losses.append(float(m["loss"]))
    return state, setup_, losses


def main() -> None:
    out = {"devices": jax.device_count(), "losses": {}, "report": {}}
    states = {}
    for name, spec in MESHES.items():
        state, step_setup, losses = train(spec)
        out["losses"][name] = losses
        out["report"][name] = report(state.params)
        average = weight_average_state(state.opt_state).average
        out.setdefault("average", {})[name] = {
            "sharded_like_params": all(a.sharding == p.sharding for a, p in zip(
                jax.tree_util.tree_leaves(average), jax.tree_util.tree_leaves(state.params), strict=True)),
            "first_leaf": np.asarray(jax.tree_util.tree_leaves(host_params(average))[0]).ravel()[:8].tolist()}
        states[name] = (state, step_setup)
    for name, spec in LAYOUT_ONLY.items():
        out["report"][name] = report(setup(spec)[0].params)

    fsdp_state, _ = states["fsdp"]
    saved = host_params(fsdp_state.params)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Checkpoints(tmp)
        ckpt.save("latest", STEPS, fsdp_state, {"epoch": 1})
        out["restore"] = {}
        for target in ("dp_tp", "single"):
            like, _ = states[target]
            restored, _meta = ckpt.restore("latest", like)
            leaves = jax.tree_util.tree_leaves(restored.params)
            same_mesh = all(leaf.sharding == want.sharding for leaf, want in
                            zip(leaves, jax.tree_util.tree_leaves(like.params), strict=True))
            diff = max(float(np.abs(a - b).max()) for a, b in
                       zip(jax.tree_util.tree_leaves(host_params(restored.params)),
                           jax.tree_util.tree_leaves(saved), strict=True))
            out["restore"][target] = {"max_abs_diff": diff, "shardings_of_target_mesh": same_mesh,
                                      "step": int(restored.step)}
        ckpt.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
