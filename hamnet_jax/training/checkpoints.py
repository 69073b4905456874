"""Orbax checkpoints of the train state: `checkpoints/latest` and `checkpoints/best`.

Orbax writes each step into a temporary folder and renames it when complete, so a crash
never leaves a half-written checkpoint; `max_to_keep=1` keeps one per kind. A JSON
metadata item carries the loop's bookkeeping (epoch, best score, history) for `--resume`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    def __init__(self, directory: str | Path):
        opts = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False)
        root = Path(directory).absolute()
        self.managers = {kind: ocp.CheckpointManager(root / kind, options=opts) for kind in ("latest", "best")}

    def save(self, kind: str, step: int, state: Any, meta: dict) -> None:
        mngr = self.managers[kind]
        mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                meta=ocp.args.JsonSave(meta)), force=True)
        mngr.wait_until_finished()

    def latest_step(self, kind: str = "latest") -> int | None:
        return self.managers[kind].latest_step()

    def restore(self, kind: str, like: Any) -> tuple[Any, dict]:
        """Restore the newest checkpoint of `kind` into the structure of `like`."""
        mngr = self.managers[kind]
        step = mngr.latest_step()
        if step is None:
            raise FileNotFoundError(f"no {kind} checkpoint under {mngr.directory}")
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                         meta=ocp.args.JsonRestore()))
        return out["state"], out["meta"]

    def read_meta(self, kind: str = "latest") -> dict | None:
        """The bookkeeping of the newest checkpoint of `kind`, without its arrays."""
        mngr = self.managers[kind]
        step = mngr.latest_step()
        if step is None:
            return None
        return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def close(self) -> None:
        for mngr in self.managers.values():
            mngr.close()
