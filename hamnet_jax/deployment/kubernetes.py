"""Kubernetes manifests of the gRPC service from `deployment:`, and the checks of every manifest.

`manifests(section)` returns the objects as dicts, `to_yaml` one multi-document YAML:

* Deployment   the serving container (`dockerfile.serve_command`, HAMNET_API_* env),
               CPU / memory (and `nvidia.com/gpu`) requests and limits, the kubelet's
               native gRPC liveness / readiness / startup probes on the API port (they call
               `grpc.health.v1`, which the server answers without a token), a preStop pause
               and a termination grace period longer than the server's drain;
* Service      ClusterIP, `grpc` port (appProtocol grpc) and, with monitoring, `metrics`;
* HorizontalPodAutoscaler (mode auto_scaling) min_instances..max_instances on CPU;
* PodDisruptionBudget (more than one replica possible): one pod down at a time.

The serving container listens on every interface and requires a bearer token
(`--token-file`, mounted read-only from the Secret `<name>-api-token`, which the operator
creates: no token value is ever generated into a manifest). `check_manifests` refuses a
container that would serve a non-loopback address without a token from a Secret, unless
its command says `--insecure`.

The KServe forms (kserve.py) are checked here too. `check_manifests` validates what is
generated: the fields Kubernetes requires, selectors that match the pod labels, probe and
Service ports that are the port the server listens on, and for KServe: a predictor with
either containers or a model (format, storageUri, a runtime that serves the format).
"""

from __future__ import annotations

from typing import Any

import yaml

from hamnet_jax.config.sections import DeploymentSection
from hamnet_jax.deployment.dockerfile import TOKEN_DIR, container_env, serve_command
from hamnet_jax.errors import InputError

DRAIN_SECONDS = 10  # `hamnet serve --grace` default: in-flight calls get this long at SIGTERM


def _labels(section: DeploymentSection) -> dict[str, str]:
    return {"app.kubernetes.io/name": "hamnet-jax", "app.kubernetes.io/instance": section.name}


def object_metadata(section: DeploymentSection, **extra: Any) -> dict[str, Any]:
    return {"name": section.name, "namespace": section.namespace, "labels": _labels(section), **extra}


def replicas(section: DeploymentSection) -> int:
    """single: 1; load_balanced: max_instances, fixed; auto_scaling: min_instances to start."""
    return {"single": 1, "load_balanced": section.max_instances, "auto_scaling": section.min_instances}[section.mode]


def container(section: DeploymentSection) -> dict[str, Any]:
    resources: dict[str, dict[str, str]] = {"requests": {"cpu": section.cpu, "memory": section.memory},
                                            "limits": {"memory": section.memory}}
    if section.gpus:
        resources["requests"]["nvidia.com/gpu"] = resources["limits"]["nvidia.com/gpu"] = str(section.gpus)
    ports = [{"name": "grpc", "containerPort": section.api_port, "protocol": "TCP"}]
    if section.enable_monitoring:
        ports.append({"name": "metrics", "containerPort": section.metrics_port, "protocol": "TCP"})

    def probe(failures: int) -> dict[str, Any]:
        return {"grpc": {"port": section.api_port}, "periodSeconds": 10, "timeoutSeconds": 3,
                "failureThreshold": failures}

    return {
        "name": "hamnet", "image": section.image, "imagePullPolicy": "IfNotPresent",
        "command": serve_command(section), "env": [{"name": k, "value": v} for k, v in container_env(section).items()],
        "ports": ports, "resources": resources,
        # model loading and warm-up may take minutes: the startup probe holds the others off
        "startupProbe": probe(30), "readinessProbe": probe(1), "livenessProbe": probe(3),
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},  # endpoints drop the pod before SIGTERM
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "api-token", "mountPath": TOKEN_DIR, "readOnly": True}],
    }


def token_secret(section: DeploymentSection) -> str:
    """The Secret holding the API token (key `token`), made by the operator, never generated:
    kubectl create secret generic <name>-api-token --from-file=token=FILE."""
    return f"{section.name}-api-token"


def volumes(section: DeploymentSection) -> list[dict[str, Any]]:
    return [{"name": "tmp", "emptyDir": {}},
            {"name": "api-token", "secret": {"secretName": token_secret(section), "defaultMode": 0o400}}]


def manifests(section: DeploymentSection) -> list[dict[str, Any]]:
    labels = _labels(section)
    annotations = ({"prometheus.io/scrape": "true", "prometheus.io/port": str(section.metrics_port),
                    "prometheus.io/path": "/metrics"} if section.enable_monitoring else {})
    pod = {"metadata": {"labels": labels, "annotations": annotations},
           "spec": {"containers": [container(section)], "volumes": volumes(section),
                    "securityContext": {"fsGroup": 10001},  # (the token file readable by the server's user)
                    "terminationGracePeriodSeconds": DRAIN_SECONDS + 20}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": object_metadata(section),
                  "spec": {"replicas": replicas(section), "selector": {"matchLabels": labels}, "template": pod,
                           "strategy": {"type": "RollingUpdate",
                                        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}}
    ports = [{"name": "grpc", "port": section.api_port, "targetPort": "grpc", "protocol": "TCP",
              "appProtocol": "grpc"}]
    if section.enable_monitoring:
        ports.append({"name": "metrics", "port": section.metrics_port, "targetPort": "metrics", "protocol": "TCP"})
    service = {"apiVersion": "v1", "kind": "Service", "metadata": object_metadata(section),
               "spec": {"type": "ClusterIP", "selector": labels, "ports": ports}}
    out = [deployment, service]
    if section.mode == "auto_scaling":
        out.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                    "metadata": object_metadata(section),
                    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": section.name},
                             "minReplicas": section.min_instances, "maxReplicas": section.max_instances,
                             "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                                 "type": "Utilization", "averageUtilization": section.target_cpu_utilization}}}]}})
    if section.mode != "single" and section.max_instances > 1:
        out.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": object_metadata(section),
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}})
    return out


class _PlainDumper(yaml.SafeDumper):
    """No `&id001` anchors for repeated dicts: manifests read as written."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(documents: list[dict[str, Any]]) -> str:
    return yaml.dump_all(documents, Dumper=_PlainDumper, sort_keys=False)


def _require(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise InputError(f"{doc.get('kind', '?')} {doc.get('metadata', {}).get('name', '?')}: missing {path}")
        value = value[key]
    return value


def _check_authenticated(kind: str, c: dict[str, Any], pod_volumes: list[dict[str, Any]]) -> None:
    """A container serving on a non-loopback address needs its token from a Secret: a
    `--token-file` under a volume mounted from a Secret, or HAMNET_API_TOKEN from a
    secretKeyRef; `--insecure` says the open service is meant."""
    command = [*c.get("command", []), *c.get("args", [])]
    env = {e["name"]: e for e in c.get("env", [])}
    host = command[command.index("--host") + 1] if "--host" in command else env.get("HAMNET_API_HOST", {}).get(
        "value", "127.0.0.1")
    if host in ("127.0.0.1", "localhost", "::1") or "--insecure" in command:
        return
    if "secretKeyRef" in env.get("HAMNET_API_TOKEN", {}).get("valueFrom", {}):
        return
    secrets = {v["name"] for v in pod_volumes if "secret" in v}
    mounted = [m["mountPath"].rstrip("/") + "/" for m in c.get("volumeMounts", []) if m["name"] in secrets]
    token_file = command[command.index("--token-file") + 1] if "--token-file" in command else None
    if token_file is None or not any(token_file.startswith(m) for m in mounted):
        raise InputError(f"{kind}: container {c['name']} serves on {host} without authentication: give it "
                         "`--token-file` under a volume mounted from a Secret (or HAMNET_API_TOKEN from a "
                         "secretKeyRef), or `--insecure` if an open service is meant")


# KServe's own runtimes (ClusterServingRuntimes) and the model formats they serve
CLUSTER_RUNTIMES = {"kserve-tritonserver": {"onnx", "tensorrt", "triton", "tensorflow", "pytorch"}}
STORAGE_SCHEMES = ("s3://", "gs://", "pvc://", "hdfs://", "webhdfs://", "https://", "http://", "oci://")


def _check_model(isvc: dict[str, Any], runtimes: dict[str, dict[str, Any]]) -> None:
    """A predictor pulling its model from storage: a format, a storageUri KServe can fetch,
    and a runtime (one of the documents, or KServe's own) that serves that format."""
    name = isvc["metadata"]["name"]
    fmt = _require(isvc, "spec.predictor.model.modelFormat.name")
    uri = _require(isvc, "spec.predictor.model.storageUri")
    if not isinstance(uri, str) or not uri.startswith(STORAGE_SCHEMES):
        raise InputError(f"InferenceService {name}: spec.predictor.model.storageUri {uri!r} is not a URI KServe's "
                         f"storage initializer fetches ({', '.join(STORAGE_SCHEMES)})")
    runtime = isvc["spec"]["predictor"]["model"].get("runtime")
    if runtime in runtimes:
        served = {f["name"] for f in runtimes[runtime]["spec"]["supportedModelFormats"]}
    elif runtime in CLUSTER_RUNTIMES:
        served = CLUSTER_RUNTIMES[runtime]
    else:
        raise InputError(f"InferenceService {name}: runtime {runtime!r} is neither a ServingRuntime of these "
                         f"manifests ({sorted(runtimes)}) nor one of KServe's ({sorted(CLUSTER_RUNTIMES)})")
    if fmt not in served:
        raise InputError(f"InferenceService {name}: runtime {runtime} serves {sorted(served)}, not modelFormat {fmt!r}")


def check_manifests(documents: list[dict[str, Any]], section: DeploymentSection) -> None:
    """Raise `InputError` naming the object and field when a manifest is incomplete or
    inconsistent with the server it runs (`section.api_port`)."""
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in documents:
        for path in ("apiVersion", "kind", "metadata.name", "spec"):
            _require(doc, path)
        by_kind[doc["kind"]] = doc
    pods = []
    if "Deployment" in by_kind:
        d = by_kind["Deployment"]
        labels = _require(d, "spec.template.metadata.labels")
        if _require(d, "spec.selector.matchLabels").items() - labels.items():
            raise InputError("Deployment: spec.selector.matchLabels do not select the pod template's labels")
        pods.append(("Deployment", _require(d, "spec.template.spec.containers"),
                     d["spec"]["template"]["spec"].get("volumes", [])))
        if "Service" in by_kind and _require(by_kind["Service"], "spec.selector").items() - labels.items():
            raise InputError("Service: spec.selector does not select the Deployment's pods")
    runtimes = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ServingRuntime"}
    for name, runtime in runtimes.items():
        _require(runtime, "spec.supportedModelFormats")
        pods.append((f"ServingRuntime {name}", _require(runtime, "spec.containers"),
                     runtime["spec"].get("volumes", [])))
    for isvc in (d for d in documents if d["kind"] == "InferenceService"):
        predictor = _require(isvc, "spec.predictor")
        if "model" in predictor:
            _check_model(isvc, runtimes)
        else:
            pods.append(("InferenceService", _require(isvc, "spec.predictor.containers"),
                         predictor.get("volumes", [])))
    for kind, containers, pod_volumes in pods:
        for c in containers:
            for path in ("name", "image"):
                _require(c, path)
            _check_authenticated(kind, c, pod_volumes)
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if env.get("HAMNET_API_PORT") != str(section.api_port):
                raise InputError(f"{kind}: HAMNET_API_PORT is {env.get('HAMNET_API_PORT')}, the server port is "
                                 f"{section.api_port}")
            declared = {p["containerPort"] for p in c.get("ports", [])}
            if section.api_port not in declared:
                raise InputError(f"{kind}: container {c['name']} does not declare port {section.api_port}")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = c.get(probe, {}).get("grpc", {}).get("port")
                if port != section.api_port:
                    raise InputError(f"{kind}: {probe} calls port {port}, the server listens on {section.api_port}")
    if "Service" in by_kind:
        named = {p["name"]: p for p in _require(by_kind["Service"], "spec.ports")}
        if "grpc" not in named or named["grpc"]["port"] != section.api_port:
            raise InputError(f"Service: no grpc port {section.api_port}")
    if "HorizontalPodAutoscaler" in by_kind:
        h = by_kind["HorizontalPodAutoscaler"]["spec"]
        if not 1 <= h["minReplicas"] <= h["maxReplicas"]:
            raise InputError(f"HorizontalPodAutoscaler: minReplicas {h['minReplicas']} / maxReplicas "
                             f"{h['maxReplicas']} are not 1 <= min <= max")
        if h["scaleTargetRef"]["name"] != by_kind.get("Deployment", {}).get("metadata", {}).get("name"):
            raise InputError("HorizontalPodAutoscaler: scaleTargetRef does not name the Deployment")
