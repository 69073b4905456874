"""Hardware monitoring while a benchmark runs: a background thread samples CPU use (per
core), this process's resident memory and the machine's available memory (psutil), and
each NVIDIA GPU's utilization, memory and power through NVML (`nvidia-ml-py`) when the
library and a GPU are present; `summary()` gives mean and max of each series.

    with HardwareMonitor(interval=0.25) as monitor:
        run_benchmark()
    monitor.summary()   # {"cpu_percent": {"mean": .., "max": ..}, "rss_mb": ..., "gpu0_util_percent": ...}
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import psutil


def process_cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds a process (this one by default) has used."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _nvml_handles() -> tuple[Any, list[Any]]:
    """(the pynvml module, one handle per GPU), or (None, []) without NVML or GPUs."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml, [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # no library, no driver, no device: nothing to sample  # noqa: BLE001
        return None, []


class HardwareMonitor:
    """Samples every `interval` seconds between `start()` and `stop()` (or as a context)."""

    def __init__(self, interval: float = 0.25, gpus: bool = True) -> None:
        if interval <= 0:
            raise ValueError(f"HardwareMonitor: interval must be > 0 seconds, got {interval}")
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self._process = psutil.Process()
        self._nvml, self._gpus = _nvml_handles() if gpus else (None, [])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def gpu_count(self) -> int:
        return len(self._gpus)

    def sample(self) -> dict[str, float]:
        per_core = psutil.cpu_percent(percpu=True)
        row = {"time": time.time(), "cpu_percent": float(np.mean(per_core)), "cpu_max_core_percent": max(per_core),
               "process_cpu_percent": self._process.cpu_percent(),
               "rss_mb": self._process.memory_info().rss / 2**20,
               "available_mb": psutil.virtual_memory().available / 2**20}
        for i, handle in enumerate(self._gpus):
            util = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            row[f"gpu{i}_util_percent"] = float(util.gpu)
            row[f"gpu{i}_memory_used_mb"] = memory.used / 2**20
            row[f"gpu{i}_power_w"] = self._nvml.nvmlDeviceGetPowerUsage(handle) / 1e3
        return row

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(self.sample())

    def start(self) -> HardwareMonitor:
        psutil.cpu_percent(percpu=True)  # the first reading of a counter is meaningless: prime it
        self._process.cpu_percent()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="hardware-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if not self.samples:  # a run shorter than one interval still gets one reading
            self.samples.append(self.sample())

    def __enter__(self) -> HardwareMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> dict[str, dict[str, float]]:
        keys = [k for k in self.samples[0] if k != "time"] if self.samples else []
        return {k: {"mean": float(np.mean([s[k] for s in self.samples])),
                    "max": float(np.max([s[k] for s in self.samples]))} for k in keys}
