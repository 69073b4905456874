"""One process of the multi-host test: join the job, train a tiny model with `fit()` on
a 4-device data-parallel mesh (2 devices per process), write its final params and the
training rows it read.

    python -m tests.workers.multihost_worker PORT NUM_PROCESSES PROCESS_ID OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

from hamnet_jax.config import TrainingConfig
from hamnet_jax.data.batch import random_batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.training.distributed import initialize_distributed
from hamnet_jax.training.loop import fit
from hamnet_jax.transforms.select import path_str

CONFIG = HAMNetConfig.from_tier("base", clinical_dim=12, imaging_dim=40, genetic_dim=64, lifestyle_dim=4,
                                lifestyle_cardinalities=(3,), imaging_group_size=16, genetic_group_size=16)


class RecordingBatch:
    """A batch that records the rows each `take` reads."""

    def __init__(self, batch) -> None:
        self.batch, self.taken = batch, []

    def __getattr__(self, name):
        return getattr(self.batch, name)

    def take(self, rows):
        self.taken.append(np.asarray(rows))
        return self.batch.take(rows)


def main() -> None:
    port, count, pid, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    if count > 1:
        initialize_distributed(f"127.0.0.1:{port}", count, pid)
    cfg = TrainingConfig(batch_size=16, num_epochs=2, learning_rate=3e-3, eval_batch_size=64,
                         early_stop_patience=0, mesh={"data": -1})
    train = RecordingBatch(random_batch(CONFIG, 64, 3, seed=1))
    result = fit(CONFIG, cfg, train, random_batch(CONFIG, 32, 3, seed=2), checkpoint_dir=out / "checkpoints")
    flat = {path_str(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(result.params)}
    np.savez(out / f"params_{count}_{pid}.npz", **flat)
    steps = [rows for rows in train.taken if rows.size >= 16 // count]  # (not fit's 1- and 2-row examples)
    np.save(out / f"rows_{count}_{pid}.npy", np.stack(steps))
    print(f"process {pid}/{count}: {jax.device_count()} devices, history {result.history}")


if __name__ == "__main__":
    main()
