"""`hamnet cache list | prune`: what the shared cache root holds (cache_root.py), and removing it.

A cohort cache is listed with its key, source file, subjects, size and when a run last read
it (the mtime of its meta.json, touched on every load); a fitted-baselines file with its
size and last use. `prune` removes partial cohort builds whose builder is dead (their key's
lock is free) and, with `older_than_days` or `everything`, complete entries; a cohort whose
key is locked (being built) is skipped. A cohort cache removed while a process reads it
stays readable to that process (its files are mapped), and the next run that needs any
entry rebuilds it: pruning never breaks a run.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from hamnet_jax.cache_root import cache_dir
from hamnet_jax.data.cohort_cache import LOCKS, META
from hamnet_jax.file_lock import try_locked


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def list_caches(root: Path) -> list[dict[str, Any]]:
    """One row per cohort cache (complete or partial) and per fitted-baselines file under the
    cache root `root`, newest use first."""
    rows = _cohorts(cache_dir("cohorts", root))
    baselines = cache_dir("baselines", root)
    if baselines.is_dir():
        rows += [{"kind": "baselines", "key": p.stem, "path": str(p), "bytes": p.stat().st_size, "state": "complete",
                  "last_used": p.stat().st_mtime} for p in sorted(baselines.glob("*.skops"))]
    return sorted(rows, key=lambda r: -r["last_used"])


def _cohorts(root: Path) -> list[dict[str, Any]]:
    if not root.is_dir():
        return []
    rows = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        meta_file = directory / META
        key = directory.name.split(".partial-")[0]
        row: dict[str, Any] = {"kind": "cohort", "key": key, "path": str(directory), "bytes": _size(directory)}
        if ".partial-" in directory.name or not meta_file.exists():
            row.update(state="partial", last_used=directory.stat().st_mtime)
        else:
            meta = json.loads(meta_file.read_text())
            row.update(state="complete", source=meta.get("source"), subjects=meta.get("subjects"),
                       format=meta.get("format"), last_used=meta_file.stat().st_mtime)
        rows.append(row)
    return rows


def prune_caches(root: Path, older_than_days: float | None = None, everything: bool = False) -> dict[str, Any]:
    """Under the cache root `root`: remove dead partial builds, and entries unused for
    `older_than_days` (or all with `everything`); returns what was removed, the bytes freed
    and what was busy."""
    now = time.time()
    removed, busy, freed = [], [], 0
    for row in list_caches(root):
        stale = row["state"] == "partial" or everything or (
            older_than_days is not None and now - row["last_used"] > older_than_days * 86400)
        if not stale:
            continue
        if row["kind"] == "baselines":  # (written whole by a rename: nothing to wait for)
            Path(row["path"]).unlink(missing_ok=True)
        else:
            with try_locked(cache_dir("cohorts", root) / LOCKS / f"{row['key']}.lock") as held:
                if not held:
                    busy.append(row["path"])
                    continue
                shutil.rmtree(row["path"], ignore_errors=True)
        removed.append(row["path"])
        freed += row["bytes"]
    return {"removed": removed, "bytes_freed": freed, "busy": busy}
