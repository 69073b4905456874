"""Model loads that cannot leak or crash: a version that fails releases what was built, a
reload loop over a corrupt version keeps the thread count and resident memory flat, and `hamnet serve` starts
with the models that load, reporting the bad one as UNAVAILABLE with its reason."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

grpc = pytest.importorskip("grpc")
tc = pytest.importorskip("tritonclient.grpc")

from hamnet_jax.platform.freed_memory import trim_c_heap  # noqa: E402
from hamnet_jax.serving.repository import Repository  # noqa: E402
from hamnet_jax.serving.server import start_server  # noqa: E402

ONNX_OPTIONS = "inference:\n  backend: onnxruntime\n  mc_samples: 0\n  batch_size: 4\n"


@pytest.fixture(scope="module")
def repository_with_a_corrupt_version(onnx_model, tmp_path_factory):
    """good/1: a working ONNX model; half/1 works and half/2 is corrupt (its params gone)."""
    root = tmp_path_factory.mktemp("repo")
    onnx_model(root / "good", ONNX_OPTIONS)
    shutil.copytree(root / "good" / "1", root / "half" / "1")
    shutil.copytree(root / "good" / "1", root / "half" / "2")
    shutil.rmtree(root / "half" / "2" / "params")
    # one-subject batches: one ONNX Runtime session per load, so the reloads stay quick
    (root / "half" / "inference.yaml").write_text(ONNX_OPTIONS.replace("batch_size: 4", "batch_size: 1"))
    return root


def _resident_bytes() -> int:
    """This process's resident memory, once the C heap's free pages are handed back."""
    trim_c_heap()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="resident memory is read from /proc (Linux)")
def test_a_reload_loop_over_a_corrupt_version_leaks_no_thread_and_no_memory(repository_with_a_corrupt_version):
    """50 reloads that build version 1 and fail on version 2: the thread count is unchanged
    and resident memory flat (before the fix each left a batcher thread and its session; a
    session of even this tiny model is over 1 MiB, 50 of them far over the margin)."""
    repo = Repository(repository_with_a_corrupt_version)
    for _ in range(5):  # (the first tries: imports, caches and the allocator's pools settle)
        with pytest.raises(Exception, match="not a finished run"):
            repo.load("half")
    threads, resident = threading.active_count(), _resident_bytes()
    for _ in range(50):
        with pytest.raises(Exception, match="not a finished run"):
            repo.load("half")
    grown = _resident_bytes() - resident
    assert grown < 16 << 20, f"resident memory grew {grown / 2**20:.1f} MiB over 50 reloads"
    assert threading.active_count() == threads  # version 1's batcher thread was stopped each time
    assert repo.loaded() == [] and "version 2" in repo.failures["half"]
    print(f"50 reloads: {threads} threads throughout, resident memory {grown / 2**20:+.1f} MiB")


def test_the_server_starts_with_the_models_that_load(repository_with_a_corrupt_version):
    repo = Repository(repository_with_a_corrupt_version)
    failed = repo.load_all()
    assert list(failed) == ["half"]
    with pytest.raises(Exception, match="not a finished run"):
        Repository(repository_with_a_corrupt_version).load_all(strict=True)
    running = start_server(repo, port=0, workers=2)
    try:
        client = tc.InferenceServerClient(f"127.0.0.1:{running.port}")
        index = {(m["name"], m["version"]): m for m in client.get_model_repository_index(as_json=True)["models"]}
        assert index[("good", "1")]["state"] == "READY"
        half = index[("half", "2")]
        assert half["state"] == "UNAVAILABLE" and "version 2" in half["reason"] and "params" in half["reason"]
        assert str(repository_with_a_corrupt_version) not in half["reason"]  # (no server path)
        assert client.is_server_ready() and client.is_model_ready("good")
        client.close()
    finally:
        running.stop(1)
