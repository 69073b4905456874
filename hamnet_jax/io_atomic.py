"""Atomic file writes: write to a temporary file in the same folder, fsync, rename.

A crash leaves either the old file or the new one, never half of either.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("hamnet_jax")
TAIL_SCAN = 1 << 16  # bytes read back to find the last newline of a torn tail


def write_atomic(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    """Call `write(fileobj)` on a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text))


def strict_json(obj: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers and strict readers (jq) reject them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(strict_json(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


class AppendLog:
    """Append-only JSON lines, each fsynced, for logs whose order matters (a study's events,
    an experiment's assignments and outcomes).

    A crash mid-append leaves a torn last line. The next `append` heals it first: a tail
    that is a whole event missing only its newline gets the newline, anything else is cut
    back to the last complete line (fsynced), so later events are never glued to it.
    `read` skips a line that is not a JSON object wherever it is (a file torn by an older
    writer, a disk error), keeps every other event, and reports the loss: `skipped` holds
    the 1-based line numbers, and a warning names the file and the lines. Appends from
    several processes are serialized by an exclusive `flock` on the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.skipped: list[int] = []

    def read(self) -> list[dict[str, Any]]:
        self.skipped = []
        if not self.path.exists():
            return []
        out = []
        for number, line in enumerate(self.path.read_bytes().split(b"\n"), 1):
            if not line.strip():
                continue
            event = _json_object(line)
            if event is None:
                self.skipped.append(number)
            else:
                out.append(event)
        if self.skipped:
            log.warning("%s: skipped %d unreadable line(s) (line %s); the other %d event(s) are read",
                        self.path, len(self.skipped), ", ".join(map(str, self.skipped)), len(out))
        return out

    def append(self, event: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(event) + "\n").encode()
        with open(self.path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # (released when the file closes)
            _heal_tail(f)
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def _json_object(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _heal_tail(f: Any) -> None:
    """Make the file (opened a+b, locked) end with a newline: give a complete tail its
    newline, cut a torn one back to the last complete line."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return
    f.seek(size - 1)
    if f.read(1) == b"\n":
        return
    keep = _after_last_newline(f, size)
    f.seek(keep)
    if _json_object(f.read()) is not None:
        f.write(b"\n")  # (append mode: written at the end)
    else:
        log.warning("%s: cut a torn last line of %d bytes (an append interrupted by a crash)", f.name, size - keep)
        f.truncate(keep)
    f.flush()
    os.fsync(f.fileno())


def _after_last_newline(f: Any, size: int) -> int:
    """The offset just after the file's last newline (0 without one), read back in blocks."""
    end = size
    while end > 0:
        start = max(0, end - TAIL_SCAN)
        f.seek(start)
        found = f.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0
