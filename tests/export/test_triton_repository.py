"""`hamnet export --format triton`: a model repository whose config.pbtxt parses with Triton's
own ModelConfig proto and states exactly the tensors ONNX Runtime finds in the graph."""

from __future__ import annotations

import numpy as np
import pytest

from hamnet_jax.cli import main

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                       reason="needs tritonclient (serving extra)")

NUMPY_OF = {"TYPE_FP32": np.float32, "TYPE_INT32": np.int32, "TYPE_INT64": np.int64, "TYPE_BOOL": np.bool_}
ORT_OF = {"tensor(float)": "TYPE_FP32", "tensor(int32)": "TYPE_INT32", "tensor(int64)": "TYPE_INT64",
          "tensor(bool)": "TYPE_BOOL"}


def parse(path):
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("mc_samples", [0, 4])
def test_the_repository_matches_its_graph(tiny_run, tmp_path, capsys, mc_samples):
    import onnxruntime as ort

    out = tmp_path / "repo"
    assert main(["export", "--run", str(tiny_run), "--format", "triton", "--out", str(out), "--name", "bioage",
                 "--mc-samples", str(mc_samples), "--max-batch", "64"]) == 0
    assert "tritonserver --model-repository" in capsys.readouterr().out
    config = parse(out / "bioage" / "config.pbtxt")
    assert config.name == "bioage" and config.backend == "onnxruntime" and config.max_batch_size == 64
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 32]
    assert config.instance_group[0].count == 1
    session = ort.InferenceSession(str(out / "bioage" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    for declared, actual in ((config.input, session.get_inputs()), (config.output, session.get_outputs())):
        assert [t.name for t in declared] == [t.name for t in actual]
        for t, a in zip(declared, actual, strict=True):
            assert model_config_pb2.DataType.Name(t.data_type) == ORT_OF[a.type], t.name
            assert list(t.dims) == [d if isinstance(d, int) else -1 for d in a.shape[1:]], t.name
    outputs = {t.name for t in config.output}
    assert ("epistemic_std" in outputs) == (mc_samples > 0) and "prediction" in outputs
    # the declared tensors are what the graph runs on: a batch of 3 built from the config alone
    rng = np.random.default_rng(0)
    feeds = {t.name: rng.normal(size=(3, *t.dims)).astype(NUMPY_OF[model_config_pb2.DataType.Name(t.data_type)])
             for t in config.input}
    result = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    assert result["prediction"].shape[0] == 3 and np.isfinite(result["prediction"]).all()
    assert (out / "README.md").exists()


def test_bad_repository_settings_are_named(tiny_run, tmp_path, capsys):
    assert main(["export", "--run", str(tiny_run), "--format", "triton", "--out", str(tmp_path / "r"),
                 "--name", "no spaces"]) == 2
    assert "a Triton model name is letters" in capsys.readouterr().err
