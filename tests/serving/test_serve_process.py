"""`hamnet serve` as its own process, as deployed: a real Prometheus server scrapes it, the
image's health probe checks it, and SIGTERM stops it cleanly. One process serves the
module; the SIGTERM test, which ends it, comes last."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

tc = pytest.importorskip("tritonclient.grpc")

from hamnet_jax.inference.raw_inputs import random_raw  # noqa: E402
from hamnet_jax.inference.raw_model import RawModel  # noqa: E402
from hamnet_jax.runs.run_dir import load_run  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tiny_run, tmp_path_factory):
    """(process, gRPC port, metrics port, stderr file, REST port) of `hamnet serve --run tiny_run`,
    its port given the way a container gives it (HAMNET_API_PORT)."""
    root = tmp_path_factory.mktemp("serve")
    port, metrics_port, http_port = free_port(), free_port(), free_port()
    config = root / "serve.yaml"
    config.write_text("inference:\n  batch_size: 4\n")  # buckets 1, 2, 4: a short warm-up
    stderr = root / "stderr.log"
    proc = subprocess.Popen([sys.executable, "-m", "hamnet_jax.cli", "serve", "--run", str(tiny_run),
                             "--metrics-port", str(metrics_port), "--config", str(config),
                             "--http-port", str(http_port)],
                            stdout=subprocess.PIPE, stderr=stderr.open("w"), text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "HAMNET_API_PORT": str(port)})
    line = proc.stdout.readline()
    assert line.startswith(f"serving hamnet/1 (jax) on 127.0.0.1:{port} "), (line, stderr.read_text())
    assert f"KServe V2 REST on http://127.0.0.1:{http_port}/v2" in line
    yield proc, port, metrics_port, stderr, http_port
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_real_prometheus_server_scrapes_the_request_count(served, tiny_run, tmp_path):
    """Debian's `prometheus` scrapes the service's /metrics; a query returns the requests this test sent."""
    _, port, metrics_port, _, _ = served
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus server is not installed (Debian: apt install prometheus)")
    raw = RawModel.from_run(load_run(tiny_run))
    request = random_raw(raw.spec, raw.preprocessor, 1, seed=12)
    client = tc.InferenceServerClient(f"127.0.0.1:{port}")
    sent = 7
    for _ in range(sent):
        inputs = []
        for name, value in request.items():
            tensor = tc.InferInput(name, list(value.shape), "FP32")
            tensor.set_data_from_numpy(np.ascontiguousarray(value, np.float32))
            inputs.append(tensor)
        client.infer("hamnet", inputs)
    client.close()
    prometheus_port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n  - job_name: hamnet\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n")
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
    query = urllib.parse.quote('sum(hamnet_requests_total{job="hamnet",model="hamnet",status="OK"})')
    value = None
    try:
        deadline = time.time() + 60
        while time.time() < deadline and value != sent:
            time.sleep(1)
            try:
                reply = json.loads(urllib.request.urlopen(
                    f"http://127.0.0.1:{prometheus_port}/api/v1/query?query={query}", timeout=5).read())
            except OSError:
                continue  # not listening yet
            result = reply["data"]["result"]
            value = int(float(result[0]["value"][1])) if result else None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert value == sent, (tmp_path / "prometheus.log").read_text()[-2000:]


def test_hamnet_serve_answers_probes_and_stops_on_sigterm(served):
    from hamnet_jax.client import probe

    proc, port, _, stderr, http_port = served
    c = tc.InferenceServerClient(f"127.0.0.1:{port}")
    assert c.is_server_live() and c.is_model_ready("hamnet")
    c.close()
    assert probe.main(["--port", str(port)]) == 0  # the image's HEALTHCHECK
    rest = f"http://127.0.0.1:{http_port}/v2/models/hamnet/ready"
    assert json.loads(urllib.request.urlopen(rest, timeout=10).read()) == {"name": "hamnet", "ready": True}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert probe.main(["--port", str(port), "--timeout", "1"]) == 1
    with pytest.raises(OSError):  # both protocols stopped
        urllib.request.urlopen(rest, timeout=5)
    logs = [json.loads(x) for x in stderr.read_text().splitlines() if x.startswith("{")]
    assert any(x["logger"] == "hamnet_jax.serving" and "serving" in x["message"] for x in logs)  # JSON logs
