"""`hamnet cache list | prune`: what the shared cohort cache root holds, and removing it.

A cache is listed with its key, source file, subjects, size and when a run last read it
(the mtime of its meta.json, touched on every load). `prune` removes partial builds whose
builder is dead (their key's lock is free) and, with `older_than_days` or `everything`,
complete caches; a cache whose key is locked (being built) is skipped. A cache removed
while a process reads it stays readable to that process (its files are mapped), and the
next run that needs it rebuilds it: pruning never breaks a run.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from hamnet_jax.data.cohort_cache import LOCKS, META
from hamnet_jax.file_lock import try_locked


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def list_caches(root: Path) -> list[dict[str, Any]]:
    """One row per complete cache and per partial build under `root`, newest use first."""
    if not root.is_dir():
        return []
    rows = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        meta_file = directory / META
        key = directory.name.split(".partial-")[0]
        row: dict[str, Any] = {"key": key, "path": str(directory), "bytes": _size(directory)}
        if ".partial-" in directory.name or not meta_file.exists():
            row.update(state="partial", last_used=directory.stat().st_mtime)
        else:
            meta = json.loads(meta_file.read_text())
            row.update(state="complete", source=meta.get("source"), subjects=meta.get("subjects"),
                       format=meta.get("format"), last_used=meta_file.stat().st_mtime)
        rows.append(row)
    return sorted(rows, key=lambda r: -r["last_used"])


def prune_caches(root: Path, older_than_days: float | None = None, everything: bool = False,
                 now: float | None = None) -> dict[str, Any]:
    """Remove dead partial builds, and complete caches unused for `older_than_days` (or all
    with `everything`); returns what was removed, the bytes freed and what was busy."""
    now = time.time() if now is None else now
    removed, busy, freed = [], [], 0
    for row in list_caches(root):
        stale = row["state"] == "partial" or everything or (
            older_than_days is not None and now - row["last_used"] > older_than_days * 86400)
        if not stale:
            continue
        with try_locked(root / LOCKS / f"{row['key']}.lock") as held:
            if not held:
                busy.append(row["path"])
                continue
            shutil.rmtree(row["path"], ignore_errors=True)
        removed.append(row["path"])
        freed += row["bytes"]
    return {"removed": removed, "bytes_freed": freed, "busy": busy}
