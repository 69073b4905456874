"""The gRPC inference service against stock clients: tritonclient.grpc, grpc.health.v1,
reflection; bad and fuzzed requests; repository load / unload; metrics, A/B and live drift
(`hamnet serve` as a process: test_serve_process.py; auth, health and control:
test_secure_service.py; the shared server: conftest.py)."""

import queue

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")
tc = pytest.importorskip("tritonclient.grpc")

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402

from hamnet_jax.runs.run_dir import load_run  # noqa: E402
from hamnet_jax.serving.server import SERVICE_NAME  # noqa: E402

from .served import infer_inputs, raw_request, request_of  # noqa: E402


def test_stock_tritonclient_works_unchanged(server, client):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("hamnet")
    assert client.get_server_metadata(as_json=True)["name"] == "hamnet-jax"
    meta = client.get_model_metadata("hamnet", as_json=True)
    model, request = request_of(server, "hamnet", 6)
    assert [i["name"] for i in meta["inputs"]] == list(model.raw.spec.names)
    assert "prediction" in [o["name"] for o in meta["outputs"]]
    config = client.get_model_config("hamnet", as_json=True)["config"]
    assert config["max_batch_size"] > 0 and config["input"][0]["data_type"] == "TYPE_FP32"
    result = client.infer("hamnet", infer_inputs(request))
    want = model.predictor.predict(request)
    for name in ("prediction", "total_std", "epistemic_std", "outcome_probability"):
        np.testing.assert_allclose(result.as_numpy(name), want[name], atol=1e-5)
    done = queue.Queue()
    client.async_infer("hamnet", infer_inputs(request), lambda result, error: done.put((result, error)))
    r, e = done.get(timeout=60)
    assert e is None and np.allclose(r.as_numpy("prediction"), want["prediction"], atol=1e-5)
    # the ONNX Runtime backend of the same run (deterministic graph)
    onnx_model, _ = request_of(server, "hamnet_onnx", 1)
    out = client.infer("hamnet_onnx", infer_inputs(request)).as_numpy("prediction")
    np.testing.assert_allclose(out, onnx_model.predictor.predict(request)["prediction"], atol=1e-4)


def test_typed_contents_in_and_out(server, stub):
    model, request = request_of(server, "hamnet", 3, seed=1)
    message = service_pb2.ModelInferRequest(model_name="hamnet", id="req-7")
    for name, value in request.items():
        tensor = message.inputs.add(name=name, datatype="FP32", shape=list(value.shape))
        tensor.contents.fp32_contents.extend(value.ravel().tolist())
    message.outputs.add(name="prediction")
    response = stub.ModelInfer(message)
    assert response.id == "req-7" and [o.name for o in response.outputs] == ["prediction"]
    got = np.asarray(response.outputs[0].contents.fp32_contents, np.float32)
    np.testing.assert_allclose(got, model.predictor.predict(request)["prediction"], atol=1e-5)


@pytest.mark.parametrize("mutate, code, words", [
    (lambda m: setattr(m, "model_name", "nope"), "NOT_FOUND", "nope"),
    (lambda m: setattr(m.inputs[0], "name", "clinicl"), "INVALID_ARGUMENT", "clinicl"),
    (lambda m: setattr(m.inputs[1], "datatype", "FP64"), "INVALID_ARGUMENT", "datatype FP64, expected FP32"),
    (lambda m: m.raw_input_contents.__setitem__(2, m.raw_input_contents[2][:-4]), "INVALID_ARGUMENT", "bytes"),
    (lambda m: m.inputs[0].shape.__setitem__(2, 5), "INVALID_ARGUMENT", "input 'clinical'"),
    (lambda m: m.outputs.add(name="age"), "INVALID_ARGUMENT", "requested output"),
])
def test_bad_requests_get_a_status_naming_the_problem(server, stub, mutate, code, words):
    _, request = request_of(server, "hamnet", 4, seed=2)
    message = raw_request(request)
    mutate(message)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(message)
    assert err.value.code().name == code and words in err.value.details()


def test_infinite_and_empty_subjects_name_the_row(server, stub):
    _, request = request_of(server, "hamnet", 5, seed=3)
    request["imaging"][3, 0, 1] = -np.inf
    with pytest.raises(grpc.RpcError, match="subject row 3") as err:
        stub.ModelInfer(raw_request(request))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, request = request_of(server, "hamnet", 5, seed=3)
    for name in request:
        if name != "visit_times":
            request[name][1] = np.nan
    with pytest.raises(grpc.RpcError, match="subject row 1 has no modality"):
        stub.ModelInfer(raw_request(request))


def test_fuzzed_requests_are_all_answered_and_the_server_stays_up(server, client):
    from hamnet_jax.client.fuzz import MUTATIONS, malformed_requests
    from hamnet_jax.client.loadtest import statuses

    _, valid = request_of(server, "hamnet", 1, seed=4)
    cases = malformed_requests(valid, "hamnet", 8 * len(MUTATIONS), seed=1)
    codes = statuses(f"127.0.0.1:{server.port}", [c[1] for c in cases], concurrency=4)
    by_mutation: dict[str, set] = {}
    for (mutation, _), code in zip(cases, codes, strict=True):
        by_mutation.setdefault(mutation, set()).add(code)
    assert set(by_mutation) == set(MUTATIONS)
    for mutation, seen in by_mutation.items():
        # (bytes that are no protobuf too: the server reads the body itself, serving/infer_intake.py)
        allowed = {"INVALID_ARGUMENT", "NOT_FOUND"}
        assert seen <= allowed, (mutation, seen)
    assert client.is_server_live() and client.is_model_ready("hamnet")


def test_a_model_reloaded_under_load_loses_no_request(server, client):
    import threading
    import time

    model, request = request_of(server, "hamnet_onnx", 1, seed=9)
    message = raw_request(request, "hamnet_onnx")
    stop, codes = threading.Event(), []

    def send() -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        while not stop.is_set():
            try:
                stub.ModelInfer(message, timeout=60)
                codes.append("OK")
            except grpc.RpcError as err:
                codes.append(err.code().name)
        channel.close()

    def sent_at_least(n: int) -> None:  # waits for the senders (a deadline only a hang reaches)
        deadline = time.monotonic() + 120
        while len(codes) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(codes) >= n

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    old = server.servicer.repository.get("hamnet_onnx")
    sent_at_least(6)  # calls before the reloads, during them, and after them
    for _ in range(2):
        client.load_model("hamnet_onnx")
    sent_at_least(len(codes) + 6)
    stop.set()
    for t in threads:
        t.join()
    assert server.servicer.repository.get("hamnet_onnx") is not old  # the version was replaced
    assert len(codes) > 10 and set(codes) == {"OK"}, {c: codes.count(c) for c in set(codes)}


def test_request_ids_and_json_request_logs(server, stub, caplog):
    import json
    import logging

    from hamnet_jax.monitoring.logs import JsonFormatter
    from hamnet_jax.serving.request_log import REQUEST_ID_KEY

    _, request = request_of(server, "hamnet", 2, seed=10)
    with caplog.at_level(logging.INFO, logger="hamnet_jax.serving.requests"):
        mine = stub.ModelInfer(raw_request(request, request_id="visit-42"))
        made_up = stub.ModelInfer(raw_request(request))
        bad = raw_request(request)
        bad.inputs[0].datatype = "FP64"
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(bad)
    assert mine.id == "visit-42" and made_up.id and made_up.id != mine.id
    failed_id = dict(err.value.trailing_metadata())[REQUEST_ID_KEY]
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name.endswith("requests")]
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["visit-42"]["status"] == "OK" and by_id["visit-42"]["subjects"] == 2
    assert by_id[made_up.id]["model"] == "hamnet" and by_id[made_up.id]["latency_ms"] > 0
    assert by_id[failed_id]["status"] == "INVALID_ARGUMENT" and "FP64" in by_id[failed_id]["error"]


def test_health_reflection_and_repository_control(server, client):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == \
            health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = next(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    assert SERVICE_NAME in [s.name for s in answer.list_services_response.service]
    channel.close()
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {(m["name"], m["version"], m["state"]) for m in index} == {
        ("hamnet", "1", "READY"), ("hamnet_onnx", "1", "READY"), ("ab", "1", "READY"), ("ab", "2", "READY")}
    client.unload_model("hamnet_onnx")
    assert not client.is_model_ready("hamnet_onnx")
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
    status = lambda name: health.Check(health_pb2.HealthCheckRequest(service=name)).status
    assert status("hamnet_onnx") == health_pb2.HealthCheckResponse.NOT_SERVING  # per model, by name
    assert status("") == status("hamnet") == health_pb2.HealthCheckResponse.SERVING  # others still serve
    with pytest.raises(tc.InferenceServerException, match="not loaded"):
        client.get_model_metadata("hamnet_onnx")
    client.load_model("hamnet_onnx")
    assert client.is_model_ready("hamnet_onnx")
    stats = client.get_inference_statistics("hamnet", as_json=True)["model_stats"][0]
    assert int(stats["inference_count"]) > 0 and int(stats["inference_stats"]["fail"]["count"]) > 0


def test_dynamic_batcher_batches_concurrent_requests_and_bounds_its_queue(server):
    from hamnet_jax.serving.batcher import DynamicBatcher, QueueFull

    model, request = request_of(server, "hamnet", 12, seed=5)
    want = model.predictor.predict(request)
    checked = [model.predictor.validate({k: v[i:i + 1] for k, v in request.items()}) for i in range(12)]
    batcher = DynamicBatcher(model.predictor, max_batch=8, max_queue_delay_us=200_000, preferred_sizes=(4,))
    with batcher._cv:  # the 12 requests arrive together: the worker sees them once the lock is free
        futures = [batcher.submit(checked[i]) for i in range(12)]
    for i, f in enumerate(futures):
        np.testing.assert_allclose(f.result(timeout=60)["prediction"], want["prediction"][i:i + 1], atol=1e-5)
    assert batcher.batch_subjects == {4: 3}  # batched together, cut back to the preferred size
    batcher.close()
    tiny = DynamicBatcher(model.predictor, max_batch=1, max_queue_delay_us=0, max_queue=1)
    with tiny._cv:  # hold the worker: the queue fills
        tiny._queue.append((checked[0], 1, 0.0, __import__("concurrent.futures").futures.Future()))
        with pytest.raises(QueueFull, match="holds 1 requests"):
            tiny.submit(checked[1])
    tiny.close()


def test_client_and_loadtest_against_the_server(server, capsys):
    from hamnet_jax.cli import main
    from hamnet_jax.client.client import HAMNetClient
    from hamnet_jax.client.loadtest import format_table, requests_from_metadata, sweep

    url = f"127.0.0.1:{server.port}"
    model, request = request_of(server, "hamnet", 3, seed=6)
    with HAMNetClient(url) as client:
        assert client.ready()
        out = client.predict(request, request_id="r1")
    np.testing.assert_allclose(out["prediction"], model.predictor.predict(request)["prediction"], atol=1e-5)
    rows = sweep(url, "hamnet", requests_from_metadata(url, "hamnet", count=4), levels=(1, 2), duration=0.5)
    assert [r["concurrency"] for r in rows] == [1, 2] and all(r["errors"] == 0 and r["requests"] > 0 for r in rows)
    assert "| 2 |" in format_table(rows)
    assert main(["loadtest", "--url", "127.0.0.1:1", "--concurrency", "1", "--duration", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "UNAVAILABLE" in err[0]


def test_prometheus_metrics(server, client, stub):
    import urllib.request

    _, request = request_of(server, "hamnet", 2, seed=8)
    client.infer("hamnet", infer_inputs(request))
    bad = raw_request(request)
    bad.inputs[0].name = "nope"
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(bad)
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics.port}/metrics", timeout=10).read().decode()
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert samples['hamnet_requests_total{model="hamnet",status="OK",version="1"}'] >= 1
    assert samples['hamnet_request_latency_seconds_count{model="hamnet",version="1"}'] >= 1
    assert 'hamnet_queue_depth{model="hamnet",version="1"}' in samples
    assert any(k.startswith('hamnet_batches_total{model="hamnet"') for k in samples)
    assert samples['hamnet_requests_total{model="hamnet",status="INVALID_ARGUMENT",version=""}'] >= 1
    # 200 calls naming models nobody loaded add one series, not 200
    for i in range(200):
        made_up = raw_request(request, model=f"nope-{i}")
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(made_up)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics.port}/metrics", timeout=10).read().decode()
    series = [line for line in text.splitlines() if line.startswith("hamnet_requests_total{")]
    assert not any("nope-" in line for line in series)
    unknown = [line for line in series if 'model="_unknown"' in line]
    assert len(unknown) == 1 and unknown[0].startswith(
        'hamnet_requests_total{model="_unknown",status="NOT_FOUND",version="_unknown"}')
    assert float(unknown[0].rsplit(" ", 1)[1]) >= 200  # (earlier tests' made-up names count here too)


def test_a_request_without_subjects_or_with_huge_values_is_invalid(server, stub):
    _, request = request_of(server, "hamnet_onnx", 2, seed=3)
    empty = {name: value[:0] for name, value in request.items()}
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(raw_request(empty, model="hamnet_onnx"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "holds no subjects" in err.value.details()
    huge = {name: value.copy() for name, value in request.items()}
    name = next(n for n in huge if huge[n].ndim == 3)
    huge[name][1, 0, 0] = 3e38  # finite in float32, far outside what standardization can take
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(raw_request(huge, model="hamnet_onnx"))
    details = err.value.details()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and f"input {name!r}" in details
    assert "at subject row 1" in details and "/" not in details.split("(")[0]  # (no server path in the message)


def test_ab_split_shares_and_stickiness(server, stub):
    from hamnet_jax.serving.ab_split import ABSplit

    split = ABSplit({"1": 0.7, "2": 0.3})
    arms = [split.choose({"subject_id": f"S{i:05d}"}) for i in range(10_000)]
    assert abs(arms.count("2") / 10_000 - 0.3) <= 0.02
    assert all(split.choose({"subject_id": f"S{i:05d}"}) == arms[i] for i in range(0, 10_000, 97))  # sticky
    unkeyed = [split.choose({}) for _ in range(10_000)]
    assert abs(unkeyed.count("1") / 10_000 - 0.7) <= 0.02
    assert split.counts["1"] + split.counts["2"] == 20_000 + len(range(0, 10_000, 97))
    with pytest.raises(ValueError, match="weights"):
        ABSplit({"1": -1.0})
    # through the server: the same subject always reaches the same version
    _, request = request_of(server, "ab", 1, seed=9)
    seen = {}
    for subject in ("a", "b", "c", "d", "e", "f", "a", "b", "c"):
        message = raw_request(request, model="ab")
        message.parameters["subject_id"].string_param = subject
        version = stub.ModelInfer(message).model_version
        assert seen.setdefault(subject, version) == version
    assert set(seen.values()) <= {"1", "2"}
    assert sum(server.servicer.repository.splits["ab"].counts.values()) == 9


def _scrape(server) -> dict[str, float]:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics.port}/metrics", timeout=30).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_ab_assignments_are_exported(server, stub):
    _, request = request_of(server, "ab", 1, seed=10)
    counts = server.servicer.repository.splits["ab"].counts
    before = dict(counts)
    for subject in range(12):
        message = raw_request(request, model="ab")
        message.parameters["subject_id"].string_param = f"unit-{subject}"
        stub.ModelInfer(message)
    samples = _scrape(server)
    exported = {v: samples.get(f'hamnet_ab_assignments_total{{model="ab",version="{v}"}}', 0.0) for v in ("1", "2")}
    assert exported == {v: float(counts[v]) for v in ("1", "2")}
    assert sum(exported.values()) - sum(before.values()) == 12


def test_live_drift_metrics_flag_shifted_lifestyle_and_missing_imaging(server, client, tiny_run, tmp_path):
    """The service's drift gauges on answered requests of a cohort with shifted lifestyle and no imaging."""
    from hamnet_jax.data.dataset import load_cohort
    from hamnet_jax.data.profile import DataProfile
    from hamnet_jax.inference.raw_inputs import cohort_to_raw
    from hamnet_jax.monitoring.live_drift import LiveDrift
    from tests.monitoring.test_drift import _shifted_cohort

    model = server.servicer.repository.get("hamnet_onnx")
    assert model.drift is not None  # the run keeps its data profile: drift is on
    model.drift = LiveDrift(DataProfile.load(tiny_run / "data_profile.npz"), model.raw.spec.widths, max_age_s=0)
    shifted, lifestyle = _shifted_cohort(tmp_path, seed=11, shift_lifestyle=1.0, drop_imaging=True)
    run = load_run(tiny_run)
    request = cohort_to_raw(load_cohort(shifted, run.schema, run.config.data, require_target=False), model.raw.spec)
    n = len(request["visit_times"])
    for start in range(0, n, 8):
        client.infer("hamnet_onnx", infer_inputs({k: v[start:start + 8] for k, v in request.items()}))
    samples = _scrape(server)
    key = 'model="hamnet_onnx",version="1"'
    assert samples[f"hamnet_drift_window_subjects{{{key}}}"] == n
    assert samples[f"hamnet_drift_features_drifted{{{key}}}"] == len(lifestyle)
    assert samples[f"hamnet_drift_psi_max{{{key}}}"] >= 0.2
    share = 'hamnet_drift_modality_absent_{}{{modality="{}",model="hamnet_onnx",version="1"}}'.format  # sorted labels
    assert samples[share("share", "imaging")] == 1.0
    assert samples[share("change", "clinical")] == pytest.approx(0.0, abs=0.05)
    assert f"hamnet_drift_prediction_psi{{{key}}}" in samples


def test_statistics_let_a_client_find_the_version_it_reached(server, client):
    """perf_analyzer without a version (-x) reads ModelStatistics before and after a window
    and takes the version whose queue count rose (as Triton reports it)."""
    def queued():
        stats = client.get_inference_statistics("hamnet", as_json=True)["model_stats"]
        return {s["version"]: int(s["inference_stats"].get("queue", {}).get("count", 0)) for s in stats}

    before = queued()
    _, request = request_of(server, "hamnet", 2, seed=5)
    client.infer("hamnet", infer_inputs(request))
    after = queued()
    assert [v for v, count in after.items() if count > before.get(v, 0)] == ["1"]
    stats = client.get_inference_statistics("hamnet", "1", as_json=True)["model_stats"][0]["inference_stats"]
    assert int(stats["compute_infer"]["count"]) >= 1 and int(stats["compute_infer"]["ns"]) > 0
    counts = {int(stats[part]["count"]) for part in ("compute_input", "compute_infer", "compute_output")}
    assert len(counts) == 1  # one count of executions, as perf_analyzer checks
