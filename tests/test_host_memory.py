"""Huge-page malloc for the `hamnet` process: the environment it re-executes with, and the
re-execution itself (same pid, the tunable set, no second re-execution)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hamnet_jax.host_memory import TUNABLE, huge_page_malloc_env


def test_tunable_added_to_the_users_tunables_and_a_users_own_choice_kept():
    env = huge_page_malloc_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    if env is None:
        pytest.skip("no glibc or no transparent huge pages here: nothing to set")
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}=1"
    assert huge_page_malloc_env({})["GLIBC_TUNABLES"] == f"{TUNABLE}=1"
    assert huge_page_malloc_env({"GLIBC_TUNABLES": f"{TUNABLE}=0"}) is None


def test_reexecution_keeps_the_pid_and_sets_the_tunable_once():
    if huge_page_malloc_env({}) is None:
        pytest.skip("no glibc or no transparent huge pages here: nothing to re-execute for")
    code = ("import os; from hamnet_jax.host_memory import reexec_with_huge_page_malloc as r; "
            "print(os.getpid(), os.environ.get('GLIBC_TUNABLES')); r()")
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    first, second = out.splitlines()
    assert first.split()[1] == "None" and second.split()[1] == f"{TUNABLE}=1"
    assert first.split()[0] == second.split()[0]  # the same process, re-executed
