"""The V2 REST protocol beside gRPC, on the same data plane: stock tritonclient.http (JSON
and binary tensors), curl, KServe's error body, and the same auth, limits, metrics and logs
as gRPC (the shared server: conftest.py)."""

import gzip
import json
import logging
import shutil
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest

tch = pytest.importorskip("tritonclient.http")

from hamnet_jax.serving.server import start_server  # noqa: E402

from .served import infer_inputs, request_of  # noqa: E402


def http(server, path, body=None, headers=None, method=None, port=None):
    """(status, headers, body) of one call to the server's REST port."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    url = f"http://127.0.0.1:{port or server.http_port}{path}"
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def json_inputs(arrays):
    """The request's tensors as V2 JSON (NaN, a missing value, as null)."""
    return [{"name": name, "datatype": "FP32", "shape": list(v.shape),
             "data": [None if np.isnan(x) else float(x) for x in np.asarray(v, np.float32).ravel()]}
            for name, v in arrays.items()]


def test_stock_tritonclient_http_json_and_binary(server, client):
    rest = tch.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    assert rest.is_server_live() and rest.is_server_ready()
    assert rest.is_model_ready("hamnet_onnx") and not rest.is_model_ready("nope")
    assert rest.get_server_metadata()["name"] == "hamnet-jax"
    meta, grpc_meta = rest.get_model_metadata("hamnet_onnx"), client.get_model_metadata("hamnet_onnx", as_json=True)
    assert [(i["name"], i["shape"]) for i in meta["inputs"]] == \
        [(i["name"], [int(d) for d in i["shape"]]) for i in grpc_meta["inputs"]]
    outputs = [o["name"] for o in meta["outputs"]]
    config = rest.get_model_config("hamnet_onnx")
    assert config["max_batch_size"] == 8 and config["input"][0]["data_type"] == "TYPE_FP32"
    _, request = request_of(server, "hamnet_onnx", 5, seed=3)
    want = client.infer("hamnet_onnx", infer_inputs(request))  # over gRPC
    for binary in (True, False):
        inputs = []
        for name, value in request.items():
            tensor = tch.InferInput(name, list(value.shape), "FP32")
            tensor.set_data_from_numpy(np.ascontiguousarray(value, np.float32), binary_data=binary)
            inputs.append(tensor)
        asked = None if binary else [tch.InferRequestedOutput(n, binary_data=False) for n in outputs]
        result = rest.infer("hamnet_onnx", inputs, outputs=asked, request_id=f"rest-{binary}")
        assert result.get_response()["id"] == f"rest-{binary}"
        assert [o["name"] for o in result.get_response()["outputs"]] == outputs
        for name in outputs:
            np.testing.assert_allclose(result.as_numpy(name), want.as_numpy(name), atol=1e-5)
    stats = rest.get_inference_statistics("hamnet_onnx")["model_stats"][0]
    assert stats["name"] == "hamnet_onnx" and stats["inference_count"] >= 10
    assert isinstance(stats["inference_stats"]["success"]["count"], int)
    assert {"name": "hamnet_onnx", "version": "1", "state": "READY", "reason": ""} in \
        rest.get_model_repository_index()
    rest.close()


def test_curl_with_a_json_body_gets_the_grpc_prediction(server, client):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    _, request = request_of(server, "hamnet_onnx", 3, seed=4)
    body = json.dumps({"id": "curl-1", "inputs": json_inputs(request)})
    url = f"http://127.0.0.1:{server.http_port}/v2/models/hamnet_onnx/versions/1/infer"
    done = subprocess.run([curl, "-sS", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@-",
                           url], input=body, capture_output=True, text=True, check=True, timeout=60)
    answer = json.loads(done.stdout)
    assert answer["model_name"] == "hamnet_onnx" and answer["model_version"] == "1" and answer["id"] == "curl-1"
    got = {o["name"]: np.asarray(o["data"], np.float32) for o in answer["outputs"]}
    want = client.infer("hamnet_onnx", infer_inputs(request)).as_numpy("prediction")
    np.testing.assert_allclose(got["prediction"], want, atol=1e-5)


def _infer_body(server, mutate):
    _, request = request_of(server, "hamnet_onnx", 2, seed=5)
    body = {"inputs": json_inputs(request)}
    mutate(body)
    return body


@pytest.mark.parametrize("mutate, words", [
    (lambda b: b["inputs"][0].__setitem__("name", "nope"), "nope"),
    (lambda b: b["inputs"][0].__setitem__("datatype", "INT32"), "expected FP32"),
    (lambda b: b["inputs"][1].__setitem__("data", b["inputs"][1]["data"][:-1]), "values in `data`"),
    (lambda b: b["inputs"][1].__setitem__("data", ["x"] * len(b["inputs"][1]["data"])), "list of numbers"),
    (lambda b: b["inputs"][0].__setitem__("shape", "2"), "`shape` must be a list"),
    (lambda b: b["inputs"][0].__setitem__("parameters", {"binary_data_size": 64}), "binary_data_size"),
    (lambda b: b.__setitem__("outputs", [{"name": "age"}]), "'age'"),
    (lambda b: b.pop("inputs"), "no `inputs`"),
])
def test_a_wrong_input_gets_400_with_kserve_error_body(server, mutate, words):
    status, headers, body = http(server, "/v2/models/hamnet_onnx/infer", _infer_body(server, mutate))
    error = json.loads(body)
    assert status == 400 and set(error) == {"error"} and words in error["error"], error
    assert headers["hamnet-request-id"]


@pytest.mark.parametrize("path, body, method, status", [
    ("/v2/models/nope/infer", {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}]}, "POST", 404),
    ("/v2/models/nope", None, "GET", 404),
    ("/v2/nothing-here", None, "GET", 404),
    ("/v2/models/hamnet_onnx/infer", None, "GET", 405),
    ("/v2/models/hamnet_onnx/infer", b"{not json", "POST", 400),
    ("/v2/repository/models/nope/load", None, "POST", 400),
])
def test_every_error_is_a_json_body(server, path, body, method, status):
    got, _, answer = http(server, path, body, method=method)
    assert got == status and isinstance(json.loads(answer)["error"], str)


def test_binary_and_gzip_bodies(server, client):
    _, request = request_of(server, "hamnet_onnx", 4, seed=6)
    blobs = [np.ascontiguousarray(v, np.float32).tobytes() for v in request.values()]
    head = json.dumps({"inputs": [{"name": n, "datatype": "FP32", "shape": list(v.shape),
                                   "parameters": {"binary_data_size": len(b)}}
                                  for (n, v), b in zip(request.items(), blobs, strict=True)],
                       "outputs": [{"name": "prediction", "parameters": {"binary_data": True}}]}).encode()
    headers = {"Inference-Header-Content-Length": str(len(head)), "Content-Encoding": "gzip"}
    status, response_headers, body = http(server, "/v2/models/hamnet_onnx/infer",
                                          gzip.compress(head + b"".join(blobs)), headers)
    assert status == 200, body
    size = int(response_headers["Inference-Header-Content-Length"])
    answer = json.loads(body[:size])
    assert answer["outputs"][0]["parameters"]["binary_data_size"] == 16
    want = client.infer("hamnet_onnx", infer_inputs(request)).as_numpy("prediction")
    np.testing.assert_allclose(np.frombuffer(body[size:], np.float32), want, atol=1e-5)


def test_rest_shares_auth_limits_metrics_and_logs_with_grpc(server, caplog):
    secured = start_server(server.servicer.repository, port=0, workers=2, token="s3cret", http_port=0,
                           max_message_bytes=32 * 1024, metrics_port=0)
    try:
        def call(path, body=None, token=None):
            headers = {"authorization": f"Bearer {token}"} if token else {}
            return http(secured, path, body, headers, port=secured.http_port)

        assert call("/v2/health/live")[0] == 200 and call("/v2/health/ready")[0] == 200  # probes: no token
        status, headers, body = call("/v2")
        assert status == 401 and "bearer token" in json.loads(body)["error"] and headers["WWW-Authenticate"]
        assert call("/v2", token="wrong")[0] == 401 and call("/v2", token="s3cret")[0] == 200
        big = _infer_body(server, lambda b: b["inputs"][0].__setitem__("data", [0.0] * 20_000))
        status, _, body = call("/v2/models/hamnet_onnx/infer", big, token="s3cret")
        assert status == 413 and "at most 32,768" in json.loads(body)["error"]
        with caplog.at_level(logging.INFO, logger="hamnet_jax.serving.requests"):
            ok = call("/v2/models/hamnet_onnx/infer", _infer_body(server, lambda b: None), token="s3cret")
            assert ok[0] == 200, ok[2]
        lines = [r for r in caplog.records if r.name == "hamnet_jax.serving.requests"]
        assert lines and lines[-1].protocol == "http" and lines[-1].subjects == 2 and lines[-1].status == "OK"
        text = urllib.request.urlopen(f"http://127.0.0.1:{secured.metrics.port}/metrics", timeout=10).read().decode()
        assert 'hamnet_requests_total{model="hamnet_onnx",status="OK",version="1"} 1.0' in text
    finally:
        secured.stop(1, close_models=False)
