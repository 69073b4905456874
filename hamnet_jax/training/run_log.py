"""Per-epoch logging of a run: `metrics.jsonl` (rewritten atomically, so a resumed run's
file matches its checkpoint) and TensorBoard scalars under `tb/`; `ScalarLog` alone for
the fine-tunes of pruning, QAT and distillation (`tb/<stage>/`)."""

from __future__ import annotations

import json
from pathlib import Path

from hamnet_jax.io_atomic import strict_json, write_text_atomic


class ScalarLog:
    """Each epoch's record as TensorBoard scalars (tag = the record's key, step = its epoch)."""

    def __init__(self, log_dir: Path):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def log(self, record: dict) -> None:
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class RunLog:
    def __init__(self, run_dir: Path, history: list[dict] | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.history: list[dict] = list(history or [])
        self._flush()
        self.scalars = ScalarLog(Path(run_dir) / "tb")

    def _flush(self) -> None:
        lines = (json.dumps(strict_json(r), sort_keys=True, allow_nan=False) + "\n" for r in self.history)
        write_text_atomic(self.path, "".join(lines))

    def log_epoch(self, record: dict) -> None:
        self.history.append(record)
        self._flush()
        self.scalars.log(record)

    def close(self) -> None:
        self.scalars.close()
