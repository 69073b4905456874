"""Named kill points: fault injection that makes a process die at an exact place, not after a sleep.

A crash test sets `HAMNET_KILL_AT` in the environment of the process it starts, then checks
that a rerun (or `--resume`) ends where an uninterrupted run would. Because the process kills
itself where the code says, the test's verdict does not depend on how fast the machine is:

    HAMNET_KILL_AT=cohort_cache.chunk_written@2   # SIGKILL on the 2nd time that point is reached
    HAMNET_KILL_AT=checkpoint.latest_saved        # on the 1st (`@1` is the default)
    HAMNET_KILL_AT=a@3,b                          # either, whichever comes first
    HAMNET_KILL_AT=nas/search.trial_started@2     # only inside `kill_scope("nas")` (a pipeline stage)

Points reached inside `kill_scope(name)` answer to their bare name and to `name/point`, each
counted on its own, so a test can pick one stage of a pipeline that trains several models.

The process ends with SIGKILL (no `finally`, no atexit, no flush), as an OOM kill or a lost
machine would end it. Unset (every normal run), `kill_point` only reads one environment
variable. The points: docs/development.md.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hamnet_jax.errors import InputError

VARIABLE = "HAMNET_KILL_AT"

_hits: dict[str, int] = {}
_scopes: list[str] = []


def parse(spec: str) -> dict[str, int]:
    """`'a@3,b'` -> `{'a': 3, 'b': 1}`; an error names the malformed entry."""
    out: dict[str, int] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        name, _, count = entry.partition("@")
        if not name or (count and not (count.isdigit() and int(count) >= 1)):
            raise InputError(f"{VARIABLE}: '{entry}' is not POINT or POINT@N with N >= 1")
        out[name] = int(count) if count else 1
    return out


@contextmanager
def kill_scope(name: str) -> Iterator[None]:
    """Points reached inside also answer to `name/point` (scopes nest: `a/b/point`)."""
    _scopes.append(name)
    try:
        yield
    finally:
        _scopes.pop()


def kill_point(name: str) -> None:
    """SIGKILL this process if `HAMNET_KILL_AT` names `name` and this is its chosen hit."""
    spec = os.environ.get(VARIABLE)
    if not spec:
        return
    wanted = parse(spec)
    for point in (name, "/".join([*_scopes, name])) if _scopes else (name,):
        if point not in wanted:
            continue
        _hits[point] = _hits.get(point, 0) + 1
        if _hits[point] == wanted[point]:
            print(f"{VARIABLE}: killed at {point}@{wanted[point]}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
