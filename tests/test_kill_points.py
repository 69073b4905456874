"""Named kill points: the process dies exactly at the chosen hit of the chosen point, inside
a scope when one is named, and a malformed HAMNET_KILL_AT is named in the error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hamnet_jax.errors import InputError
from hamnet_jax.kill_points import parse

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
from hamnet_jax.kill_points import kill_point, kill_scope
for i in range(1, 4):
    print("a", i, flush=True)
    kill_point("a")
    with kill_scope("stage"):
        print("stage/a", i, flush=True)
        kill_point("a")
print("end", flush=True)
"""


def run_with(spec: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HAMNET_KILL_AT"} | {"PYTHONPATH": str(ROOT)}
    if spec is not None:
        env["HAMNET_KILL_AT"] = spec
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("spec, last_line, killed_at", [
    (None, "end", None),
    ("b", "end", None),  # a point never reached
    ("a", "a 1", "a@1"),  # the bare name: the 1st hit, outside the scope
    ("a@4", "stage/a 2", "a@4"),  # the bare name counts the hits inside scopes too
    ("stage/a@2", "stage/a 2", "stage/a@2"),
    ("stage/a@3,a@2", "stage/a 1", "a@2"),  # whichever comes first
])
def test_the_process_dies_at_the_named_hit(spec, last_line, killed_at):
    proc = run_with(spec)
    assert proc.stdout.splitlines()[-1] == last_line
    if killed_at is None:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == -signal.SIGKILL
        assert proc.stderr.strip() == f"HAMNET_KILL_AT: killed at {killed_at}"


def test_parse_names_a_malformed_entry():
    assert parse("a@3, b ,") == {"a": 3, "b": 1}
    for bad in ("a@0", "a@x", "@2"):
        with pytest.raises(InputError, match=f"HAMNET_KILL_AT: '{bad}' is not POINT or POINT@N"):
            parse(bad)
