"""What a training loop shows while it runs, chosen by where stderr goes.

On a terminal: a bar over the epochs (with the last validation loss and MAE), and a bar
over the steps of an epoch that appears only once the epoch has run a few seconds
(`terminal_progress.DELAY`: a 500,000-subject epoch takes minutes; a small one never shows it). Elsewhere (a
log file, a pipe, a batch job): no bars, one log line per epoch. Off (`--quiet`):
nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from hamnet_jax.terminal_progress import on_terminal, progress_bar

log = logging.getLogger("hamnet_jax")
T = TypeVar("T")


class Progress:
    def __init__(self, enabled: bool, total_epochs: int, first_epoch: int = 0, desc: str = "train",
                 stream: Any = None) -> None:
        stream = stream if stream is not None else sys.stderr
        self.total, self.desc = total_epochs, desc
        self.stream = stream
        self.bars = enabled and on_terminal(stream)
        self.lines = enabled and not self.bars
        self.epoch_bar = None
        self.started = time.perf_counter()
        if self.bars:
            from tqdm import tqdm

            self.epoch_bar = tqdm(total=total_epochs, initial=first_epoch, desc=desc, unit="epoch", file=stream)

    def steps(self, batches: Iterable[T], total: int, epoch: int) -> Iterator[T]:
        """`batches`, with a step bar on a terminal once the epoch is slow."""
        self.started = time.perf_counter()
        yield from progress_bar(batches, total, f"epoch {epoch + 1}", "step", self.bars, self.stream, leave=False)

    def epoch_done(self, record: dict[str, float]) -> None:
        shown = {k: record[k] for k in ("val_loss", "val_mae", "val_accuracy") if k in record}
        if self.epoch_bar is not None:
            self.epoch_bar.update(1)
            self.epoch_bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()})
        elif self.lines:
            log.info("%s epoch %d/%d: %s (%.1f s)", self.desc, record["epoch"], self.total,
                     ", ".join(f"{k} {v:.4f}" for k, v in shown.items()), time.perf_counter() - self.started)

    def close(self) -> None:
        if self.epoch_bar is not None:
            self.epoch_bar.close()
