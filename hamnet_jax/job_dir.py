"""A job's directory, claimed by the job's identity: a study (`search/store.py`) and a
pipeline (`pipeline/runner.py`) each write theirs to a marker file when they start, and a
later run in the same directory must bring the same identity, so two jobs never mix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import write_json_atomic


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


def differing_keys(stored: dict[str, Any], identity: dict[str, Any]) -> list[str]:
    """The keys whose values differ, one level into mappings (`config.training`)."""
    out = []
    for key in sorted(set(stored) | set(identity)):
        a, b = stored.get(key), identity.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            out.append(key)
    return out
