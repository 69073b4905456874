"""The models a server serves: the on-disk repository (`hamnet_jax.repository`, its layout)
loaded on demand.

A request without a version gets the highest loaded one, or, with `<model>/ab.yaml`, the
arm of an A/B split (serving/ab_split.py). A single run can be served as a one-model
repository (`Repository.single`). Loading builds the predictor (inference/factory.py) and
warms it up on a random request, so the first real request does not pay for compilation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from hamnet_jax.config.sections import InferenceSection
from hamnet_jax.data.profile import DataProfile
from hamnet_jax.errors import InputError
from hamnet_jax.inference.factory import build_predictor
from hamnet_jax.inference.predictor import primary_output
from hamnet_jax.inference.predictors import Predictor
from hamnet_jax.inference.raw_inputs import random_raw
from hamnet_jax.inference.raw_model import RawModel
from hamnet_jax.monitoring.live_drift import LiveDrift
from hamnet_jax.platform.freed_memory import trim_c_heap
from hamnet_jax.runs.run_dir import load_run
from hamnet_jax.repository.layout import MODEL_FILES, inference_options, model_versions
from hamnet_jax.serving.ab_split import ABSplit
from hamnet_jax.serving.batcher import DynamicBatcher

VALIDATE_ON_LOOP_BYTES = 1 << 20  # larger requests are checked (copied, padded) on an executor thread


@dataclasses.dataclass
class Statistics:
    """Counts and cumulative nanoseconds for the ModelStatistics RPC."""

    inference_count: int = 0  # subjects answered
    execution_count: int = 0  # predictor calls
    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    last_inference_ms: int = 0

    def record(self, subjects: int, started_ns: int, ok: bool) -> None:
        elapsed = time.perf_counter_ns() - started_ns
        if ok:
            self.inference_count += subjects
            self.execution_count += 1
            self.success_count += 1
            self.success_ns += elapsed
        else:
            self.fail_count += 1
            self.fail_ns += elapsed
        self.last_inference_ms = int(time.time() * 1e3)


@dataclasses.dataclass
class ServedModel:
    name: str
    version: str
    path: Path
    options: InferenceSection
    raw: RawModel
    predictor: Predictor
    batcher: DynamicBatcher | None = None
    drift: LiveDrift | None = None  # the answered requests against the run's data profile
    stats: Statistics = dataclasses.field(default_factory=Statistics)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def platform(self) -> str:
        return {"jax": "hamnet_jax", "onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}[
            self.options.backend]

    def close(self) -> None:
        """Stop batching once the queued requests are answered."""
        if self.batcher is not None:
            self.batcher.close()

    async def predict_async(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """Checked prediction (`InputError` names the input and row), statistics recorded:
        a small request checked on the event loop (cheaper than a thread hop), a large one in
        the loop's executor, computed by the batcher's worker or the executor, so the loop
        keeps taking requests and answering health checks meanwhile."""
        started = time.perf_counter_ns()
        try:
            large = sum(np.asarray(a).nbytes for a in arrays.values()) > VALIDATE_ON_LOOP_BYTES
            if large:
                checked = await asyncio.get_running_loop().run_in_executor(None, self.predictor.validate, arrays)
            else:
                checked = self.predictor.validate(arrays)
            if self.batcher is not None:
                out = await self.batcher.run_async(checked)
            else:
                out = await asyncio.get_running_loop().run_in_executor(None, self.predictor.run_validated, checked)
        except Exception:
            with self.lock:
                self.stats.record(0, started, False)
            raise
        with self.lock:
            self.stats.record(len(next(iter(out.values()))), started, True)
        if self.drift is not None:
            if large:  # (a pass over the whole request: off the loop, as its checks were)
                await asyncio.get_running_loop().run_in_executor(None, self.drift.observe, checked,
                                                                 out.get(primary_output(out)))
            else:
                self.drift.observe(checked, out.get(primary_output(out)))
        return out


def load_version(name: str, version: str, run_dir: Path, options: InferenceSection) -> ServedModel:
    run = load_run(run_dir)
    raw = RawModel.from_options(run, options)
    model_file = None
    if options.backend in MODEL_FILES:
        model_file = run_dir / MODEL_FILES[options.backend]
        if not model_file.exists():
            raise InputError(f"model {name!r} version {version}: backend {options.backend} serves "
                             f"{model_file}, which does not exist (hamnet export --raw-inputs --out {model_file})")
    predictor = build_predictor(raw, options, model_file)
    for size in predictor.warmup_sizes:
        predictor.predict(random_raw(raw.spec, raw.preprocessor, size, seed=0))
    batcher = None
    if options.dynamic_batching:
        batcher = DynamicBatcher(predictor, options.batch_size, options.max_queue_delay_us,
                                 options.preferred_batch_sizes, options.max_queue_size, options.max_queued_bytes)
    profile = run_dir / "data_profile.npz"
    drift = LiveDrift(DataProfile.load(profile), raw.spec.widths) if profile.exists() else None
    return ServedModel(name, version, run_dir, options, raw, predictor, batcher, drift)


def retire(models: list[ServedModel]) -> None:
    """Close `models` (their queued requests are answered first) and drop them, then hand
    the C heap they freed back to the system: left in the allocator's heap, each reload's
    sessions grew a loaded server's resident memory by about 4 MiB (bench_soak.py). (No
    `gc.collect`: a dropped model is freed by reference counting, measured flat over 30
    reloads without it, and a full collection held the interpreter for 0.2 s a reload.)"""
    while models:
        models.pop().close()
    trim_c_heap()


class Repository:
    """Thread-safe map (name, version) -> ServedModel over a repository directory."""

    def __init__(self, root: Path | None, options: InferenceSection | None = None,
                 single: tuple[str, Path] | None = None) -> None:
        self.root, self.default_options, self.single = root, options, single
        self.models: dict[tuple[str, str], ServedModel] = {}
        self.splits: dict[str, ABSplit] = {}  # model -> A/B split of requests naming no version
        self.failures: dict[str, str] = {}  # model -> why its last load failed (RepositoryIndex shows it)
        self._lock = threading.RLock()

    @classmethod
    def single_run(cls, run_dir: str | Path, name: str = "hamnet",
                   options: InferenceSection | None = None) -> Repository:
        repo = cls(None, options, (name, Path(run_dir)))
        repo.load(name)
        return repo

    def available(self) -> dict[str, dict[str, Path]]:
        """name -> version -> run directory, as found on disk."""
        if self.single:
            return {self.single[0]: {"1": self.single[1]}}
        return model_versions(self.root)

    def load(self, name: str) -> list[ServedModel]:
        """(Re)load every version of `name`; the old versions serve until the new ones are
        ready (then swapped in at once), so a reload under load loses no request."""
        found = self.available().get(name)
        if not found:
            raise InputError(f"model {name!r} is not in the repository")
        model_dir = self.single[1].parent if self.single else self.root / name
        options = (self.default_options or InferenceSection()) if self.single else \
            inference_options(model_dir, self.default_options)
        split_file = None if self.single else model_dir / "ab.yaml"
        split = ABSplit.load(split_file) if split_file is not None and split_file.exists() else None
        if split is not None:
            missing = sorted({v for v, _ in split.arms} - set(found))
            if missing:
                raise InputError(f"{split_file}: version(s) {missing} of model {name!r} do not exist")
        loaded: list[ServedModel] = []
        try:
            for version, path in sorted(found.items(), key=lambda x: int(x[0])):
                loaded.append(load_version(name, version, path, options))
        except Exception as err:  # one version failed: release the ones built, keep serving the old ones
            retire(loaded)
            self.failures[name] = f"version {version}: {type(err).__name__}: {err}"
            raise
        self.failures.pop(name, None)
        with self._lock:
            old = [self.models.pop(k) for k in [k for k in self.models if k[0] == name]]
            for m in loaded:
                self.models[(name, m.version)] = m
            if split is not None:
                self.splits[name] = split
            else:
                self.splits.pop(name, None)
        retire(old)  # after the swap: queued requests of the old versions still finish
        return loaded

    def load_all(self, strict: bool = False) -> dict[str, str]:
        """Load every model found; returns {name: why it failed} of those that did not load
        (they show as UNAVAILABLE with the reason). `strict`: the first failure is raised."""
        for name in self.available():
            try:
                self.load(name)
            except Exception:
                if strict:
                    raise
        return dict(self.failures)

    def unload(self, name: str) -> None:
        with self._lock:
            keys = [k for k in self.models if k[0] == name]
            if not keys:
                raise InputError(f"model {name!r} is not loaded")
            old = [self.models.pop(key) for key in keys]
        retire(old)

    def route(self, name: str, version: str, parameters: dict[str, Any]) -> ServedModel:
        """The model a request reaches: its version if it names one, else the A/B arm."""
        split = self.splits.get(name)
        if not version and split is not None:
            version = split.choose(parameters)
        return self.get(name, version)

    def get(self, name: str, version: str = "") -> ServedModel:
        with self._lock:
            versions = {v: m for (n, v), m in self.models.items() if n == name}
        if not versions:
            raise KeyError(f"model {name!r} is not loaded")
        if not version:
            return versions[max(versions, key=int)]
        if version not in versions:
            raise KeyError(f"model {name!r} has no loaded version {version!r} (loaded: {sorted(versions, key=int)})")
        return versions[version]

    def loaded(self) -> list[ServedModel]:
        with self._lock:
            return list(self.models.values())
