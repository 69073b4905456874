"""A service secure by default and honest about its models: bearer token and TLS (stock and
bundled clients), refusal of a reachable address without a token, health that follows the
models, model control off unless enabled, no server path in a message."""

import shutil
import ssl
import subprocess

import pytest

grpc = pytest.importorskip("grpc")
tc = pytest.importorskip("tritonclient.grpc")
tch = pytest.importorskip("tritonclient.http")

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from hamnet_jax.errors import InputError  # noqa: E402
from hamnet_jax.serving.repository import Repository  # noqa: E402
from hamnet_jax.serving.server import SERVICE_NAME, start_server  # noqa: E402

from .served import infer_inputs, request_of  # noqa: E402


def test_bearer_token_and_tls(server, tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl (to make a test certificate) is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    secured = start_server(server.servicer.repository, port=0, workers=4, token="s3cret",
                           tls=(cert.read_bytes(), key.read_bytes()), http_port=0)
    try:
        url = f"localhost:{secured.port}"
        _, request = request_of(server, "hamnet", 2, seed=7)
        client = tc.InferenceServerClient(url, ssl=True, root_certificates=str(cert))
        with pytest.raises(tc.InferenceServerException, match="bearer token") as err:
            client.infer("hamnet", infer_inputs(request))
        assert err.value.status() == "StatusCode.UNAUTHENTICATED"
        good = {"authorization": "Bearer s3cret"}
        assert client.is_server_live(headers=good)
        out = client.infer("hamnet", infer_inputs(request), headers=good).as_numpy("prediction")
        assert out.shape == (2,)
        with pytest.raises(tc.InferenceServerException, match="bearer token"):
            client.is_server_live(headers={"authorization": "Bearer wrong"})
        client.close()
        channel = grpc.secure_channel(url, grpc.ssl_channel_credentials(cert.read_bytes()))
        assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status == \
            health_pb2.HealthCheckResponse.SERVING  # probes need no token
        channel.close()
        rest = tch.InferenceServerClient(f"localhost:{secured.http_port}", ssl=True,  # REST: the same TLS and token
                                         ssl_context_factory=lambda: ssl.create_default_context(cafile=str(cert)))
        assert rest.is_server_live()
        with pytest.raises(tch.InferenceServerException, match="bearer token"):
            rest.get_server_metadata()
        assert rest.get_server_metadata(headers=good)["name"] == "hamnet-jax"
        rest.close()
        plain = grpc.insecure_channel(url)  # a client without TLS cannot talk to the TLS port
        with pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)
        plain.close()
        # the bundled client and the load generator, with TLS roots and the token
        from hamnet_jax.cli import main
        from hamnet_jax.client.client import Credentials, HAMNetClient

        (tmp_path / "token").write_text("s3cret\n")
        credentials = Credentials.from_files(tmp_path / "token", cert)
        with HAMNetClient(url, credentials=credentials) as ours:
            assert ours.ready() and ours.predict(request)["prediction"].shape == (2,)
        with HAMNetClient(url, credentials=Credentials(root_certificates=cert.read_bytes())) as anonymous:
            with pytest.raises(grpc.RpcError) as refused:
                anonymous.predict(request)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        rows = tmp_path / "rows.json"
        assert main(["loadtest", "--url", url, "--model", "hamnet", "--concurrency", "2", "--duration", "0.5",
                     "--token-file", str(tmp_path / "token"), "--tls-roots", str(cert), "--out", str(rows)]) == 0
        import json

        row = json.loads(rows.read_text())["rows"][0]
        assert row["requests"] > 0 and row["errors"] == 0
    finally:
        secured.stop(1, close_models=False)


def test_health_follows_the_models(repository_dir, tmp_path):
    """With the only model unloaded the server's health is NOT_SERVING (a Kubernetes
    readiness probe takes the pod out); loaded again, SERVING."""
    shutil.copytree(repository_dir / "hamnet_onnx", tmp_path / "only")
    repo = Repository(tmp_path)
    repo.load("only")
    running = start_server(repo, port=0, workers=2, model_control=True)
    try:
        c = tc.InferenceServerClient(f"127.0.0.1:{running.port}")
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
        status = lambda name: health.Check(health_pb2.HealthCheckRequest(service=name)).status
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        assert [status(n) for n in ("", SERVICE_NAME, "only")] == [serving] * 3
        c.unload_model("only")
        assert [status(n) for n in ("", SERVICE_NAME, "only")] == [not_serving] * 3
        c.load_model("only")
        assert [status(n) for n in ("", SERVICE_NAME, "only")] == [serving] * 3
        c.close()
    finally:
        running.stop(1)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.org"])
def test_serve_refuses_a_reachable_address_without_a_token(tiny_run, capsys, monkeypatch, host):
    from hamnet_jax.cli import main

    monkeypatch.delenv("HAMNET_API_TOKEN", raising=False)
    assert main(["serve", "--run", str(tiny_run), "--host", host, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"--host {host} is reachable from other machines and no token is set" in err and "--insecure" in err


def test_loopback_addresses_need_no_token():
    from hamnet_jax.cli.inference_commands import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.9", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.4", "my-host"]))


def test_no_server_path_reaches_a_client(tmp_path):
    from hamnet_jax.serving.data_plane import Failure, failure_of, without_paths

    code, message = failure_of(InputError(f"run directory {tmp_path}/models/hamnet/1 is not a finished run"))
    assert code is Failure.INVALID_ARGUMENT and str(tmp_path) not in message and ".../1 is not" in message
    code, message = failure_of(RuntimeError(f"cannot open {tmp_path}/x.onnx"))
    assert code is Failure.INTERNAL and "RuntimeError" in message and str(tmp_path) not in message
    assert without_paths("shape (1, 4) and ratio 1/2 stay") == "shape (1, 4) and ratio 1/2 stay"


def test_model_control_is_off_unless_enabled(repository_dir, tmp_path):
    shutil.copytree(repository_dir / "hamnet_onnx", tmp_path / "only")
    repo = Repository(tmp_path)
    repo.load("only")
    running = start_server(repo, port=0, workers=2)  # as `hamnet serve` starts by default
    try:
        c = tc.InferenceServerClient(f"127.0.0.1:{running.port}")
        for call in (c.unload_model, c.load_model):
            with pytest.raises(tc.InferenceServerException, match="model control is off") as err:
                call("only")
            assert err.value.status() == "StatusCode.FAILED_PRECONDITION"
        assert c.is_model_ready("only")
        c.close()
    finally:
        running.stop(1)


@pytest.mark.parametrize("extra, words", [
    (["--insecure"], "--host 127.0.0.1 is loopback"),
    (["--host", "0.0.0.0", "--insecure", "--token-file", "TOKEN"], "a token is set"),
    (["--strict"], "--strict applies to --repository"),
    (["--metrics-host", "0.0.0.0", "--metrics-port", "-1"], "--metrics-port -1 turns off"),
    (["--max-message-mb", "0"], "--max-message-mb: expected 1-2047"),
    (["--max-request-memory-mb", "0"], "--max-request-memory-mb: expected at least 1"),
    (["--http-port", "70000"], "--http-port 70000: expected a port"),
    (["--max-concurrent-calls", "0"], "expected at least 1"),
])
def test_serve_options_that_would_change_nothing_are_refused(tiny_run, tmp_path, capsys, extra, words):
    from hamnet_jax.cli import main

    (tmp_path / "token").write_text("s3cret\n")
    extra = [str(tmp_path / "token") if e == "TOKEN" else e for e in extra]
    assert main(["serve", "--run", str(tiny_run), "--port", "0", *extra]) == 2
    assert words in capsys.readouterr().err
