"""The served repository the serving tests share (one server per test process): hamnet/1 on
the JAX backend, hamnet_onnx/1 on ONNX Runtime, ab/1 and ab/2 split by weight."""

import shutil
from pathlib import Path

import pytest

grpc = pytest.importorskip("grpc")
tc = pytest.importorskip("tritonclient.grpc")

from tritonclient.grpc import service_pb2_grpc  # noqa: E402

from hamnet_jax.export.onnx_export import export_run_onnx  # noqa: E402
from hamnet_jax.inference.raw_model import RawModel  # noqa: E402
from hamnet_jax.runs.run_dir import load_run  # noqa: E402
from hamnet_jax.serving.repository import Repository  # noqa: E402
from hamnet_jax.serving.server import start_server  # noqa: E402


RUN_COPY_SKIP = shutil.ignore_patterns("checkpoints", "tb", "plots")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, tmp_path_factory):
    """The tiny run's deterministic raw-input ONNX export (and its sidecar), made once."""
    path = tmp_path_factory.mktemp("tiny_onnx") / "model.onnx"
    export_run_onnx(RawModel.from_run(load_run(tiny_run), 0), path)
    return path


@pytest.fixture(scope="session")
def onnx_model(tiny_run, tiny_onnx):
    """`make(model_dir, inference_yaml)`: a repository model whose version 1 is the tiny run
    with its ONNX export, served as `inference_yaml` says."""
    def make(model_dir: Path, inference_yaml: str) -> Path:
        shutil.copytree(tiny_run, model_dir / "1", ignore=RUN_COPY_SKIP)
        for exported in tiny_onnx.parent.iterdir():
            shutil.copy(exported, model_dir / "1" / exported.name)
        (model_dir / "inference.yaml").write_text(inference_yaml)
        return model_dir

    return make


@pytest.fixture(scope="session")
def repository_dir(tiny_run, onnx_model, tmp_path_factory):
    """hamnet/1: the tiny run on the JAX backend; hamnet_onnx/1: a copy with its raw-input
    export, served by ONNX Runtime (deterministic)."""
    root = tmp_path_factory.mktemp("repository")
    shutil.copytree(tiny_run, root / "hamnet" / "1", ignore=RUN_COPY_SKIP)
    (root / "hamnet" / "inference.yaml").write_text("inference:\n  batch_size: 8\n")  # buckets 1-8: short warm-up
    onnx_model(root / "hamnet_onnx",  # (8 sessions: quick reloads)
               "inference:\n  backend: onnxruntime\n  mc_samples: 0\n  batch_size: 8\n")
    for version in ("1", "2"):  # an A/B split between two versions
        shutil.copytree(tiny_run, root / "ab" / version, ignore=RUN_COPY_SKIP)
    # one-row requests only: one compiled bucket per version
    (root / "ab" / "inference.yaml").write_text("inference:\n  mc_samples: 0\n  batch_size: 1\n")
    (root / "ab" / "ab.yaml").write_text('weights: {"1": 0.7, "2": 0.3}\nkey: subject_id\n')
    return root


@pytest.fixture(scope="session")
def server(repository_dir):
    repo = Repository(repository_dir)
    for name in repo.available():
        repo.load(name)
    running = start_server(repo, port=0, workers=8, metrics_port=0, model_control=True, http_port=0)
    yield running
    running.stop(1)


@pytest.fixture(scope="session")
def client(server):
    c = tc.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield c
    c.close()


@pytest.fixture(scope="session")
def stub(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()
