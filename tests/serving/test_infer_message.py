"""A large ModelInferRequest read with its tensors as views of the body: the same request
protobuf parses, without the copies; a body cut short says where."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")

from tritonclient.grpc import service_pb2 as pb  # noqa: E402

from hamnet_jax.serving.infer_message import InferMessage, read_infer_request  # noqa: E402
from hamnet_jax.serving.tensors import TensorError, decode_inputs  # noqa: E402


def _request(rows: int) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", model_version="2", id="call-7")
    request.parameters["sequence_id"].int64_param = 42
    request.outputs.add(name="prediction")
    rng = np.random.default_rng(0)
    for name, width in (("a", 300), ("b", 7)):
        request.inputs.add(name=name, datatype="FP32", shape=[rows, 4, width])
        request.raw_input_contents.append(rng.normal(size=(rows, 4, width)).astype(np.float32).tobytes())
    return request


def test_a_large_request_reads_as_protobuf_does_with_views_of_the_body():
    request = _request(300)
    body = request.SerializeToString()
    assert len(body) > 1 << 20
    read = read_infer_request(body)
    assert isinstance(read, InferMessage)
    assert (read.model_name, read.model_version, read.id) == ("m", "2", "call-7")
    assert read.parameters["sequence_id"].int64_param == 42 and [o.name for o in read.outputs] == ["prediction"]
    assert [bytes(r) for r in read.raw_input_contents] == list(request.raw_input_contents)
    assert all(r.obj is body for r in read.raw_input_contents)  # views, not copies
    arrays = decode_inputs(read)
    np.testing.assert_array_equal(arrays["a"], decode_inputs(request)["a"])
    assert not arrays["a"].flags.writeable and np.shares_memory(arrays["a"], np.frombuffer(body, np.uint8))


def test_a_small_request_is_protobufs_own():
    body = _request(2).SerializeToString()
    assert isinstance(read_infer_request(body), pb.ModelInferRequest)


def test_a_large_body_cut_short_says_where():
    body = _request(300).SerializeToString()
    with pytest.raises(TensorError, match=r"ends inside raw_input_contents\[1\]"):
        read_infer_request(body[:-10])
    with pytest.raises(TensorError, match="wire type 7"):
        read_infer_request(bytes([0x0F]) + body)


def test_checks_keep_a_read_only_float32_request_where_it_lies_and_copy_anything_else(tiny_run):
    from hamnet_jax.inference.raw_inputs import random_raw, validate_raw
    from hamnet_jax.inference.raw_model import RawModel
    from hamnet_jax.runs.run_dir import load_run

    raw = RawModel.from_run(load_run(tiny_run), 0)
    arrays = random_raw(raw.spec, raw.preprocessor, 3, seed=0)
    frozen = {}
    for name, a in arrays.items():
        frozen[name] = np.frombuffer(a.tobytes(), np.float32).reshape(a.shape)  # read-only, as a server decodes
    checked = validate_raw(frozen, raw.spec)
    name = raw.spec.names[0]
    assert np.shares_memory(checked[name], frozen[name])
    checked = validate_raw(arrays, raw.spec)  # writeable: the caller's arrays are never changed
    assert not np.shares_memory(checked[name], arrays[name])
