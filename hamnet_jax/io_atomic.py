"""Atomic file writes: write to a temporary file in the same folder, fsync, rename.

A crash leaves either the old file or the new one, never half of either.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hamnet_jax.errors import DiskFullError, is_disk_full

log = logging.getLogger("hamnet_jax")
TAIL_SCAN = 1 << 16  # bytes read back to find the last newline of a torn tail


def write_atomic(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    """Call `write(fileobj)` on a temp file beside `path`, then rename it over `path`. A full
    disk is a `DiskFullError` naming `path`, which keeps its previous content."""
    path = Path(path)
    with disk_full_names(path):
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


@contextmanager
def disk_full_names(path: Path) -> Iterator[None]:
    """Turn a full disk (ENOSPC, EDQUOT) met inside into a `DiskFullError` naming `path`."""
    try:
        yield
    except OSError as e:
        if is_disk_full(e):
            raise DiskFullError(path, e) from e
        raise


def replace_directory(tmp: Path, final: Path) -> None:
    """Publish the complete directory `tmp` (beside `final`) as `final`, replacing it. A
    directory cannot be renamed over a non-empty one, so the old one is renamed aside
    (`.<name>.old-<pid>`) first and removed last; a crash between the two renames leaves
    `final` missing and the old one intact aside, and `recover_directories` puts it back."""
    _fsync_tree(tmp)
    if final.exists():
        aside = final.parent / f".{final.name}.old-{os.getpid()}"
        final.rename(aside)
        tmp.rename(final)
        fsync_directory(final.parent)
        shutil.rmtree(aside)
    else:
        tmp.rename(final)
        fsync_directory(final.parent)


def temporary_directory(final: Path) -> Path:
    """A fresh, empty temporary directory beside `final` (`.<name>.tmp-<pid>`), for
    `replace_directory`."""
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def recover_directories(parent: Path) -> None:
    """Clean up after a crashed write in `parent`: temporary directories are removed, and a
    directory set aside by `replace_directory` is put back where its replacement never
    arrived (else removed). Run by the writer when it starts, so leftovers never pile up."""
    if not parent.is_dir():
        return
    for tmp in parent.glob(".*.tmp-*"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
    for aside in sorted(parent.glob(".*.old-*")):
        final = parent / aside.name[1:].rsplit(".old-", 1)[0]
        if not final.exists():
            aside.rename(final)
        else:
            shutil.rmtree(aside, ignore_errors=True)


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        with disk_full_names(self.path), open(self.path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # (released when the file closes)
            _heal_tail(f)
            end = f.seek(0, os.SEEK_END)
            try:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            except OSError:  # (a full disk): no torn line left behind for the next append to cut
                f.truncate(end)
                raise


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
