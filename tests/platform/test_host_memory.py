"""The allocator the `hamnet` process re-executes with: the environment chosen (tcmalloc first,
then glibc's huge pages, the user's own choice kept), the re-execution itself (same pid, the
allocator set once), and a bad `HAMNET_MALLOC` named."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hamnet_jax.errors import InputError
from hamnet_jax.platform.host_memory import (
    CHOICE_VARIABLE, LARGE_ALLOC_REPORT, TUNABLE, _huge_pages_available, fast_malloc_env,
)

TCMALLOC = "libtcmalloc_minimal.so.4"
INSTALLED, ABSENT = (lambda: TCMALLOC), (lambda: None)  # tcmalloc found, or not
CLEAN = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES", CHOICE_VARIABLE)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the allocators are chosen on Linux only")
def test_tcmalloc_first_then_huge_pages_and_the_users_choice_kept():
    env = fast_malloc_env({}, find=INSTALLED)
    assert env["LD_PRELOAD"] == TCMALLOC and int(env[LARGE_ALLOC_REPORT]) > 2**40
    assert "GLIBC_TUNABLES" not in env
    assert fast_malloc_env({"LD_PRELOAD": "libfoo.so"}, find=INSTALLED)["LD_PRELOAD"] == f"{TCMALLOC} libfoo.so"
    assert fast_malloc_env({"LD_PRELOAD": "/opt/libjemalloc.so.2"}, find=INSTALLED) is None  # the user's own
    assert fast_malloc_env({"GLIBC_TUNABLES": f"{TUNABLE}=0"}, find=INSTALLED) is None
    assert fast_malloc_env({CHOICE_VARIABLE: "system"}, find=INSTALLED) is None
    assert fast_malloc_env({CHOICE_VARIABLE: "tcmalloc", "LD_PRELOAD": TCMALLOC}, find=INSTALLED) is None  # done
    with pytest.raises(InputError, match="tcmalloc: no tcmalloc library found"):  # asked for by name, not installed
        fast_malloc_env({CHOICE_VARIABLE: "tcmalloc"}, find=ABSENT)
    with pytest.raises(InputError, match="LD_PRELOAD already loads jemalloc"):
        fast_malloc_env({CHOICE_VARIABLE: "tcmalloc", "LD_PRELOAD": "/opt/libjemalloc.so.2"}, find=INSTALLED)
    with pytest.raises(InputError, match=f"{CHOICE_VARIABLE}='jemalloc': expected one of auto, tcmalloc"):
        fast_malloc_env({CHOICE_VARIABLE: "jemalloc"})
    if not _huge_pages_available():
        assert fast_malloc_env({}, find=ABSENT) is None
        with pytest.raises(InputError, match="huge-pages: needs glibc >= 2.35"):
            fast_malloc_env({CHOICE_VARIABLE: "huge-pages"}, find=ABSENT)
        return
    # no tcmalloc (or huge pages asked for): glibc's tunable, after the user's own tunables
    assert fast_malloc_env({}, find=ABSENT)["GLIBC_TUNABLES"] == f"{TUNABLE}=1"
    env = fast_malloc_env({"GLIBC_TUNABLES": f"glibc.malloc.arena_max=2:{TUNABLE}=0", CHOICE_VARIABLE: "huge-pages"},
                          find=INSTALLED)  # asked for by name: the tunable set to 1
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}=1" and "LD_PRELOAD" not in env
    assert fast_malloc_env(env, find=INSTALLED) is None  # (the re-executed process)


def test_reexecution_keeps_the_pid_and_sets_the_allocator_once():
    if fast_malloc_env(CLEAN) is None:
        pytest.skip("neither tcmalloc nor transparent huge pages here: nothing to re-execute for")
    code = ("import os; from hamnet_jax.platform.host_memory import malloc_in_use, reexec_with_fast_malloc as r; "
            "print(os.getpid(), malloc_in_use()); r()")
    out = subprocess.run([sys.executable, "-c", code], env=CLEAN, capture_output=True, text=True, check=True).stdout
    first, second = out.splitlines()  # a third line would be a second re-execution
    assert first.split()[1] == "system" and second.split()[1] != "system"
    assert first.split()[0] == second.split()[0]  # the same process, re-executed


def test_a_bad_choice_is_named_by_the_cli():
    done = subprocess.run([sys.executable, "-m", "hamnet_jax.cli", "--help"], env={**CLEAN, CHOICE_VARIABLE: "fast"},
                          capture_output=True, text=True)
    assert done.returncode == 2 and f"{CHOICE_VARIABLE}='fast'" in done.stderr
