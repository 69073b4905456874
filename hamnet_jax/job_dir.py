"""A job's directory, claimed by the job's identity, so two jobs never mix.

A study (`search/store.py`) and a pipeline (`pipeline/runner.py`) write theirs to a marker
file when they start; a later run in the same directory must bring the same identity. A
training, compression or distillation run records its identity in `job.json` and a
`--resume` must match it, except for the settings meant to change on resume (more
epochs: `RESUMABLE`). The data is identified by the SHA-256 of its bytes, never by its
name, size or time, so another file at the same path is another identity.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import strict_json, write_json_atomic

DIGEST_BLOCK = 8 << 20
JOB_FILE = "job.json"
# what a resumed run may change: how long it trains and how it is executed, not what it learns from
RESUMABLE = ("config.training.num_epochs", "config.training.early_stop_patience", "config.training.prefetch_batches",
             "config.training.eval_batch_size", "config.general", "config.data.cache", "config.data.cache_dir")


def stored_identity(root: Path, marker: str) -> dict[str, Any] | None:
    """The identity a job left in `root/marker`; None for a new or empty directory. A
    directory holding other files but no marker is refused (it is someone else's)."""
    path = root / marker
    if path.exists():
        return json.loads(path.read_text())
    if root.exists() and any(root.iterdir()):
        raise InputError(f"{root} is not empty and holds no {marker}: choose an empty or new directory")
    return None


def claim(root: Path, marker: str, identity: dict[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / marker, identity)


def differing_keys(stored: dict[str, Any], identity: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ, down to the leaves (`config.training.seed`)."""
    out = []
    for key in sorted(set(stored) | set(identity)):
        a, b = stored.get(key), identity.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differing_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes, read in blocks (once per process while the file is unchanged)."""
    stat = os.stat(path)
    return _digest(os.fspath(Path(path).resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, *_stat: int) -> str:  # (the stat fields are part of the cache key)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(DIGEST_BLOCK):
            h.update(block)
    return h.hexdigest()


def data_identity(path: str | os.PathLike) -> dict[str, Any]:
    """The data file's identity: the digest of its content (its name only for messages)."""
    if not Path(path).is_file():
        raise InputError(f"--data {path}: no such file")
    return {"sha256": file_digest(path), "bytes": Path(path).stat().st_size}


def as_stored(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity as JSON gives it back (tuples as lists, NaN as null), for comparing."""
    return json.loads(json.dumps(strict_json(identity), sort_keys=True, default=str))


def check_resume(root: Path, identity: dict[str, Any], resume: bool, allowed: tuple[str, ...] = RESUMABLE) -> None:
    """Record a new run's identity in `root/job.json`; on resume, refuse (naming each
    difference) an identity other than the recorded one, outside `allowed` prefixes. The
    recorded identity then takes the allowed changes, so the next resume compares with them."""
    identity = as_stored(identity)
    path = root / JOB_FILE
    if resume and path.exists():
        stored = json.loads(path.read_text())
        differ = [k for k in differing_keys(stored, identity)
                  if not any(k == a or k.startswith(a + ".") for a in allowed)]
        if differ:
            raise InputError(f"--resume: {root} was trained with other {', '.join(differ)} (the run's {JOB_FILE}); "
                             "resuming would continue its weights on other inputs. Resume with the same ones, or "
                             f"start a new run (settings a resume may change: {', '.join(allowed)})")
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, identity)
