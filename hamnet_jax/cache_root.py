"""Where hamnet keeps what it can rebuild: one root per machine, shared by every run.

    $HAMNET_CACHE_DIR (default $XDG_CACHE_HOME/hamnet, else ~/.cache/hamnet)
      cohorts/     data files converted to memory-mapped arrays (data/cohort_cache.py)
      baselines/   fitted baselines, keyed by the training split they were fitted on
                   (evaluation/baseline_cache.py)

Everything here is content-addressed (named by a digest of what it was made from), so
runs share it, a run directory holds no copy, and removing any of it (`hamnet cache
prune`) only costs a rebuild.
"""

from __future__ import annotations

import os
from pathlib import Path

VARIABLE = "HAMNET_CACHE_DIR"
KINDS = ("cohorts", "baselines")


def cache_root() -> Path:
    if os.environ.get(VARIABLE):
        return Path(os.environ[VARIABLE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hamnet"


def cache_dir(kind: str, root: Path | None = None) -> Path:
    """The folder of one kind of cache under `root` (default: `cache_root()`)."""
    if kind not in KINDS:
        raise ValueError(f"cache kind {kind!r}: expected one of {list(KINDS)}")
    return (root if root is not None else cache_root()) / kind
