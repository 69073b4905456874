"""Multi-process (multi-host) start-up: `jax.distributed.initialize` from CLI flags, the
standard environment variables, or the cluster's own (SLURM, Open MPI, Kubernetes).

After it, `jax.devices()` lists the devices of every process, the mesh spans them all,
and each process feeds only the rows of each global batch that its devices hold
(`training/sharding.put_global_batch`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import jax

from hamnet_jax.errors import InputError

log = logging.getLogger("hamnet_jax")

ENV_ADDRESS, ENV_COUNT, ENV_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"


def _int(name: str, value: str | int | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{name}: expected an integer, got {value!r}") from None


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, auto_detect: bool = False,
                           environ: Mapping[str, str] | None = None) -> bool:
    """Join a multi-process JAX job; returns False (and does nothing) for a single process.

    Explicit arguments win over `JAX_COORDINATOR_ADDRESS` / `JAX_NUM_PROCESSES` /
    `JAX_PROCESS_ID`; with none of them, `auto_detect` lets JAX read SLURM, Open MPI or
    Kubernetes variables. On CPU, collectives run over gloo.
    """
    env = os.environ if environ is None else environ
    address = coordinator_address or env.get(ENV_ADDRESS) or None
    count = num_processes if num_processes is not None else _int(ENV_COUNT, env.get(ENV_COUNT))
    pid = process_id if process_id is not None else _int(ENV_ID, env.get(ENV_ID))
    given = {"coordinator address": address, "number of processes": count, "process id": pid}
    if all(v is None for v in given.values()) and not auto_detect:
        return False
    if not auto_detect:
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise InputError(f"multi-process training needs a coordinator address, the number of processes and "
                             f"this process's id; missing: {', '.join(missing)} (flags --coordinator-address "
                             f"--num-processes --process-id, or {ENV_ADDRESS} {ENV_COUNT} {ENV_ID})")
        if count < 1 or not 0 <= pid < count:
            raise InputError(f"process id {pid} is not in [0, {count}) processes")
    if jax.config.jax_platforms in (None, "", "cpu") or str(jax.config.jax_platforms).startswith("cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=pid)
    log.info("process %d of %d joined %s; %d devices in all (%d local)", jax.process_index(),
             jax.process_count(), address or "the auto-detected cluster", jax.device_count(),
             jax.local_device_count())
    return True
