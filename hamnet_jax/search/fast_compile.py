"""XLA:CPU flags that trade the compiled program's speed for compile time: what search
trials (and the test suite) use, since a short trial's time goes into compiling.

Measured on the tiny train step (2 CPU cores): 15.1 s to compile by default, 10.6 s at LLVM
optimization level 0, 4.7 s adding XLA:CPU's legacy fusion emitters and runtime; results
equal to float tolerance, and the FLOPs XLA counts are the HLO's, not the backend's. XLA
aborts on a flag it does not know, and warns on every start about one it no longer honours
(jaxlib 0.10: `"xla_cpu_use_thunk_runtime" is no longer supported`), so each legacy switch
is probed once in a subprocess and kept only where it starts silently. Latency measured
under these flags is not the optimized program's: a study timing latency compiles normally.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

LLVM_O0 = "--xla_backend_optimization_level=0"
LEGACY_CPU_BACKEND = ("--xla_cpu_use_fusion_emitters=false", "--xla_cpu_use_thunk_runtime=false")


def xla_flag_honoured(flag: str) -> bool:
    """Whether a fresh CPU JAX process starts and computes with `flag` and says nothing of it
    (XLA names a flag it no longer honours on stderr, at every start)."""
    probe = "import jax.numpy as jnp; jnp.zeros(2).block_until_ready()"
    env = dict(os.environ, XLA_FLAGS=flag, JAX_PLATFORMS="cpu")
    name = flag.lstrip("-").split("=")[0]
    try:
        result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and name not in result.stderr


@functools.cache
def fast_compile_flags() -> str:
    """The fastest-compiling flag set this jaxlib honours."""
    return " ".join([LLVM_O0, *(flag for flag in LEGACY_CPU_BACKEND if xla_flag_honoured(flag))])


def with_fast_compile(xla_flags: str | None) -> str:
    """`xla_flags` (an XLA_FLAGS value) with the fast-compile flags added."""
    return f"{xla_flags or ''} {fast_compile_flags()}".strip()
