"""A progress bar for a long loop, shown only where someone watches: on a terminal (stderr
is a tty), when not turned off (`--quiet`), and only once the loop has run `DELAY`
seconds, so a short job prints nothing. Elsewhere the items pass through untouched."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

DELAY = 3.0  # seconds before a bar appears
T = TypeVar("T")


def on_terminal(stream: Any = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()


def progress_bar(items: Iterable[T], total: int | None, desc: str, unit: str, enabled: bool = True,
                 stream: Any = None, leave: bool = True) -> Iterator[T]:
    """`items`, counted by a tqdm bar on `stream` (default stderr) when it is a terminal."""
    if not (enabled and on_terminal(stream)):
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=desc, unit=unit, delay=DELAY, leave=leave,
                    file=stream if stream is not None else sys.stderr)


class StepBar:
    """A bar over a job's named steps (`bar("convert")` as each begins), on the same terms as
    `progress_bar`: a terminal, not `--quiet`, and only after `DELAY` seconds."""

    def __init__(self, total: int, desc: str, enabled: bool = True, stream: Any = None) -> None:
        self.desc, self.bar = desc, None
        if enabled and on_terminal(stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", delay=DELAY,
                            file=stream if stream is not None else sys.stderr)
        self.started = False

    def __call__(self, step: str) -> None:
        if self.bar is None:
            return
        if self.started:
            self.bar.update(1)
        self.started = True
        self.bar.set_description_str(f"{self.desc}: {step}")

    def close(self) -> None:
        if self.bar is not None:
            if self.started:
                self.bar.update(1)
            self.bar.close()
