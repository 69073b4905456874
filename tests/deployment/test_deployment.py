"""Deployment artifacts: the Dockerfile, Kubernetes manifests and KServe InferenceService that
`HAMNetDeploymentManager` / `hamnet deploy` generate from the `deployment:` section."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hamnet_jax.config import load_config
from hamnet_jax.deployment.kserve import inference_service
from hamnet_jax.deployment.kubernetes import check_manifests, manifests
from hamnet_jax.errors import InputError
from hamnet_jax.optimization.deployment import (
    DeploymentConfig, DeploymentEnvironment, DeploymentMode, HAMNetDeploymentManager)

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "serving"


def test_committed_artifacts_are_what_the_config_generates(tmp_path, capsys):
    from hamnet_jax.cli import main

    main(["deploy", "--config", str(COMMITTED / "hamnet_config.yaml"), "--out", str(tmp_path)])
    assert "docker build -f" in capsys.readouterr().out
    for name in ("Dockerfile", "Dockerfile.dockerignore", "kubernetes.yaml", "kserve.yaml", "kserve-triton.yaml"):
        assert (tmp_path / name).read_text() == (COMMITTED / name).read_text(), \
            f"serving/{name} is stale: hamnet deploy --config serving/hamnet_config.yaml --out serving"


@pytest.mark.parametrize("mode, kinds", [
    ("single", ["Deployment", "Service"]),
    ("load_balanced", ["Deployment", "Service", "PodDisruptionBudget"]),
    ("auto_scaling", ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]),
])
def test_manifests_per_mode_parse_and_match_the_server(tmp_path, mode, kinds):
    config = DeploymentConfig(environment=DeploymentEnvironment.KUBERNETES, mode=mode, api_port=9001,
                              enable_monitoring=True, min_instances=2, max_instances=6, gpus=1,
                              kserve_models="image")
    paths = HAMNetDeploymentManager(None, config, tmp_path).generate_kubernetes_manifests()
    docs = list(yaml.safe_load_all(paths["kubernetes"].read_text()))
    assert [d["kind"] for d in docs] == kinds
    deployment, service = docs[0], docs[1]
    assert deployment["spec"]["replicas"] == {"single": 1, "load_balanced": 6, "auto_scaling": 2}[mode]
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"] == service["spec"]["selector"]
    c = pod["spec"]["containers"][0]
    assert {c[p]["grpc"]["port"] for p in ("livenessProbe", "readinessProbe", "startupProbe")} == {9001}
    assert {e["name"]: e["value"] for e in c["env"]}["HAMNET_API_PORT"] == "9001"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1" and c["securityContext"]["runAsNonRoot"]
    assert c["command"][-4:-2] == ["--metrics-port", "8002"] and pod["metadata"]["annotations"]["prometheus.io/port"]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"grpc": 9001, "metrics": 8002}
    if mode == "auto_scaling":
        hpa = docs[2]["spec"]
        assert (hpa["minReplicas"], hpa["maxReplicas"], hpa["scaleTargetRef"]["name"]) == (2, 6, "hamnet")
    isvc = yaml.safe_load(paths["kserve"].read_text())
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    predictor = isvc["spec"]["predictor"]
    assert predictor["containers"][0]["ports"] == [{"name": "h2c", "containerPort": 9001, "protocol": "TCP"}]


def test_kserve_pulls_the_models_from_storage(tmp_path):
    config = DeploymentConfig(api_port=8001, mode="auto_scaling", max_instances=3, storage_uri="s3://models/hamnet",
                              triton_storage_uri="gs://models/triton")
    paths = HAMNetDeploymentManager(None, config, tmp_path).generate_kubernetes_manifests()
    assert sorted(paths) == ["kserve", "kserve-triton", "kubernetes"]
    runtime, isvc = yaml.safe_load_all(paths["kserve"].read_text())
    assert (runtime["kind"], runtime["metadata"]["name"]) == ("ServingRuntime", "hamnet-runtime")
    assert runtime["spec"]["supportedModelFormats"][0]["name"] == "hamnet"
    serving = runtime["spec"]["containers"][0]  # hamnet serve on what the storage initializer downloaded
    assert serving["command"][:4] == ["hamnet", "serve", "--repository", "/mnt/models"]
    assert serving["command"][-2:] == ["--token-file", "/var/run/secrets/hamnet/token"]
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"] == {"modelFormat": {"name": "hamnet", "version": "1"}, "runtime": "hamnet-runtime",
                                  "storageUri": "s3://models/hamnet", "protocolVersion": "grpc-v2"}
    assert "containers" not in predictor and predictor["securityContext"] == {"fsGroup": 10001}
    triton = yaml.safe_load(paths["kserve-triton"].read_text())["spec"]["predictor"]["model"]
    assert (triton["modelFormat"], triton["runtime"], triton["storageUri"], triton["protocolVersion"]) == (
        {"name": "onnx"}, "kserve-tritonserver", "gs://models/triton", "v2")
    check_manifests(list(yaml.safe_load_all(paths["kserve"].read_text())), config)
    for mutate, words in [
        (lambda d: d[1]["spec"]["predictor"]["model"].__setitem__("storageUri", "/data/models"), "not a URI KServe"),
        (lambda d: d[1]["spec"]["predictor"]["model"].__setitem__("runtime", "nope"), "neither a ServingRuntime"),
        (lambda d: d[1]["spec"]["predictor"]["model"]["modelFormat"].__setitem__("name", "sklearn"),
         "serves ['hamnet'], not modelFormat 'sklearn'"),
        (lambda d: d[0]["spec"]["containers"][0].__setitem__("command", serving["command"][:-2]),
         "ServingRuntime hamnet-runtime: container kserve-container serves on 0.0.0.0 without authentication"),
        (lambda d: d[0]["spec"]["containers"][0]["readinessProbe"]["grpc"].__setitem__("port", 1), "readinessProbe"),
    ]:
        broken = list(yaml.safe_load_all(paths["kserve"].read_text()))  # a fresh copy each time
        mutate(broken)
        with pytest.raises(InputError, match=re.escape(words)):
            check_manifests(broken, config)
    # nowhere to pull from: no KServe manifest is written, and a KServe deploy is refused
    bare = HAMNetDeploymentManager(None, DeploymentConfig(environment="cloud"), tmp_path / "bare")
    assert sorted(bare.generate_kubernetes_manifests()) == ["kubernetes"]
    with pytest.raises(InputError, match="deployment.storage_uri: KServe pulls the models from it"):
        bare.deploy()
    with pytest.raises(InputError, match="deployment.storage_uri"):
        DeploymentConfig(storage_uri="/data/models")
    with pytest.raises(InputError, match="deployment.triton_storage_uri: KServe pulls no models from storage"):
        DeploymentConfig(kserve_models="image", triton_storage_uri="gs://models/triton")


def test_check_manifests_names_what_is_wrong():
    config = DeploymentConfig(mode="auto_scaling", max_instances=3, api_port=8001)
    docs = manifests(config)
    docs[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = 8000
    with pytest.raises(InputError, match="readinessProbe calls port 8000, the server listens on 8001"):
        check_manifests(docs, config)
    docs = manifests(config)
    docs[1]["spec"]["selector"] = {"app": "other"}
    with pytest.raises(InputError, match="Service: spec.selector does not select"):
        check_manifests(docs, config)
    docs = manifests(config)
    del docs[0]["spec"]["template"]["spec"]["containers"][0]["image"]
    with pytest.raises(InputError, match="missing image"):
        check_manifests(docs, config)
    isvc = inference_service(config)
    del isvc["metadata"]["name"]
    with pytest.raises(InputError, match="InferenceService .*missing metadata.name"):
        check_manifests([isvc], config)


def test_the_manifests_take_the_token_from_a_secret_and_an_open_one_is_refused():
    config = DeploymentConfig(api_port=8001)
    for docs in (manifests(config), [inference_service(config)]):
        check_manifests(docs, config)  # as generated: the token file is mounted from the Secret
        pod = docs[0]["spec"]["template"]["spec"] if docs[0]["kind"] == "Deployment" else docs[0]["spec"]["predictor"]
        serving = pod["containers"][0]
        assert serving["command"][-2:] == ["--token-file", "/var/run/secrets/hamnet/token"]
        assert {"name": "api-token", "secret": {"secretName": "hamnet-api-token", "defaultMode": 0o400}} in \
            pod["volumes"]
        serving["command"] = serving["command"][:-2]  # no token: open to anyone who reaches the port
        with pytest.raises(InputError, match="serves on 0.0.0.0 without authentication"):
            check_manifests(docs, config)
        serving["command"] += ["--token-file", "/tmp/token"]  # a file, not from a Secret
        with pytest.raises(InputError, match="without authentication"):
            check_manifests(docs, config)
        serving["command"][-2:] = ["--insecure"]  # said so explicitly
        check_manifests(docs, config)
    committed = list(yaml.safe_load_all((ROOT / "serving" / "kubernetes.yaml").read_text()))
    check_manifests(committed, DeploymentConfig(**yaml.safe_load(
        (ROOT / "serving" / "hamnet_config.yaml").read_text())["deployment"]))


def test_dockerfile_is_multi_stage_non_root_with_a_grpc_healthcheck(tmp_path):
    config = DeploymentConfig(api_port=8101, enable_monitoring=False)
    text = HAMNetDeploymentManager(None, config, tmp_path).generate_dockerfile().read_text()
    stages = re.findall(r"^FROM (\S+) AS (\S+)$", text, re.M)
    assert {name for _, name in stages} == {"build-cpu", "build-gpu", "runtime", "cpu", "gpu"}
    assert "COPY --from=build-cpu /opt/venv" in text and "COPY --from=build-gpu /opt/venv" in text
    assert "USER hamnet" in text and "useradd" in text
    assert 'HEALTHCHECK' in text and '"-m", "hamnet_jax.client.probe"' in text
    assert "HAMNET_API_PORT=8101" in text and "EXPOSE 8101\n" in text and '"--metrics-port", "-1"' in text
    ignore = (tmp_path / "Dockerfile.dockerignore").read_text()
    assert "!hamnet_jax/" in ignore and "**/checkpoints" in ignore
    # through the lock, the GPU image with TensorRT (the gpu extra), tcmalloc in the runtime
    assert "!uv.lock" in ignore and "COPY pyproject.toml uv.lock README.md" in text
    assert text.count("uv sync --locked --no-editable") == 2 and "--extra gpu" in text
    assert "libtcmalloc-minimal4" in text.split(" AS runtime")[1]


def test_deployment_config_checks_values_and_deploy_names_a_missing_tool(tmp_path, monkeypatch):
    assert DeploymentConfig(mode=DeploymentMode.LOAD_BALANCED).mode == "load_balanced"
    with pytest.raises(InputError, match="deployment.mode"):
        DeploymentConfig(mode="fast")
    with pytest.raises(InputError, match="max_instances .* is below"):
        DeploymentConfig(min_instances=3, max_instances=2)
    with pytest.raises(InputError, match="deployment.name"):
        DeploymentConfig(name="Not_A_DNS_Name")
    from hamnet_jax.optimization import deployment

    monkeypatch.setattr(deployment.shutil, "which", lambda name: None)
    manager = HAMNetDeploymentManager(None, DeploymentConfig(environment="kubernetes"), tmp_path)
    with pytest.raises(InputError, match="needs the `kubectl` command"):
        manager.deploy()
    assert (tmp_path / "kubernetes.yaml").exists()  # the manifests were written first
    with pytest.raises(InputError, match="first argument is the model repository directory"):
        HAMNetDeploymentManager({"tier": "standard"}, DeploymentConfig())


def test_hamnet_api_environment_sets_the_server_address():
    config = load_config(environ={"HAMNET_API_HOST": "0.0.0.0", "HAMNET_API_PORT": "9100"})
    section = config.section("deployment")
    assert (section.api_host, section.api_port) == ("0.0.0.0", 9100)
    assert set(config.given["deployment"]) == {"api_host", "api_port"}


def test_docker_deploys_get_a_private_token_file(tmp_path):
    import stat

    from hamnet_jax.deployment.dockerfile import api_token_file

    path = api_token_file(tmp_path / "deploy" / "api-token")
    token = path.read_text()
    assert len(token.strip()) >= 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert api_token_file(path).read_text() == token  # kept, not replaced
