"""Advisory file locks (`fcntl.flock`) where several processes meet: one cohort-cache key,
one study or pipeline directory. The kernel drops a lock when its process dies, however it
dies, so a lock never outlives a crash and nothing has to be cleaned up after one."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hamnet_jax.errors import InputError


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold `path` (created if missing) locked exclusively, waiting for other holders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


@contextmanager
def try_locked(path: Path) -> Iterator[bool]:
    """Hold `path` locked exclusively if no one else holds it; yields whether it is held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


@contextmanager
def owned(directory: Path, what: str) -> Iterator[None]:
    """Hold `directory`'s lock for as long as this job runs in it: a second process running
    the same job in the same directory (two `--resume`s at once) is refused, naming the
    first one's pid, instead of both writing the same files."""
    path = directory / ".lock"
    directory.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise InputError(f"{directory}: another process (pid {holder}) is running this {what}; wait for it "
                             "to finish, or stop it, before continuing") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield
