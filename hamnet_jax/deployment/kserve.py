"""KServe (serving.kserve.io) manifests from `deployment:`: models pulled from storage, or
baked into the image.

With `kserve_models: storage` (the default), KServe's storage initializer downloads the
models into the predictor pod at `/mnt/models`, so a new model is a new `storageUri`, not
a new image:

* `kserve.yaml`          a `ServingRuntime` (`<name>-runtime`) that runs this image's `hamnet
                         serve --repository /mnt/models` for the model format `hamnet` (a
                         repository of `<model>/<version>/` run directories, which `hamnet
                         pipeline` writes), and the `InferenceService` `<name>` that uses it
                         on `storage_uri`;
* `kserve-triton.yaml`   an `InferenceService` `<name>-triton` for KServe's Triton runtime
                         (`kserve-tritonserver`, `modelFormat: onnx`, the V2 protocol) on
                         `triton_storage_uri`: a Triton model repository (`hamnet export
                         --format triton`).

With `kserve_models: image`, `kserve.yaml` is one InferenceService with the image (the
repository baked in at build time) as a custom gRPC predictor. `check_manifests`
(kubernetes.py) checks all of them.
"""

from __future__ import annotations

from typing import Any

from hamnet_jax.config.sections import DeploymentSection
from hamnet_jax.deployment.dockerfile import serve_command
from hamnet_jax.deployment.kubernetes import container, object_metadata, replicas, volumes
from hamnet_jax.errors import InputError

KSERVE_MODELS_DIR = "/mnt/models"  # where KServe's storage initializer puts storageUri's contents
HAMNET_FORMAT = "hamnet"  # the model format of a repository of run directories
TRITON_RUNTIME = "kserve-tritonserver"  # KServe's built-in ClusterServingRuntime for Triton


def kserve_documents(section: DeploymentSection) -> dict[str, list[dict[str, Any]]]:
    """File name -> the KServe objects it holds, per `kserve_models`; {} when storage is asked
    for and no `storage_uri` / `triton_storage_uri` says where the models are."""
    if section.kserve_models == "image":
        return {"kserve.yaml": [inference_service(section)]}
    out = {}
    if section.storage_uri:
        out["kserve.yaml"] = [serving_runtime(section), storage_inference_service(section)]
    if section.triton_storage_uri:
        out["kserve-triton.yaml"] = [triton_inference_service(section)]
    return out


def require_storage(section: DeploymentSection) -> None:
    """Refuse a KServe deployment that has nowhere to pull its models from."""
    if section.kserve_models == "storage" and not section.storage_uri:
        raise InputError("deployment.storage_uri: KServe pulls the models from it (s3://..., gs://..., "
                         "pvc://<claim>/<path>: a model repository of run directories); set it, or set "
                         "deployment.kserve_models: image to bake the repository into the image")


def _annotations(section: DeploymentSection) -> dict[str, str]:
    annotations = {"serving.kserve.io/deploymentMode": "RawDeployment"}
    if section.enable_monitoring:
        annotations.update({"serving.kserve.io/enable-prometheus-scraping": "true",
                            "prometheus.io/port": str(section.metrics_port)})
    return annotations


def _scaling(section: DeploymentSection) -> dict[str, Any]:
    scaling = section.mode == "auto_scaling"
    out: dict[str, Any] = {"minReplicas": replicas(section),
                           "maxReplicas": section.max_instances if scaling else replicas(section)}
    if scaling:
        out.update(scaleMetric="cpu", scaleTarget=section.target_cpu_utilization)
    return out


def _kserve_container(section: DeploymentSection, models_dir: str) -> dict[str, Any]:
    """The serving container as KServe runs it: named `kserve-container`, one gRPC (h2c) port."""
    serving = container(section)
    serving["name"] = "kserve-container"  # the name KServe routes a predictor's traffic to
    serving["command"] = serve_command(section, models_dir)
    serving["ports"] = [{"name": "h2c", "containerPort": section.api_port, "protocol": "TCP"}]
    return serving


def inference_service(section: DeploymentSection) -> dict[str, Any]:
    """The image (its repository baked in) as a custom predictor speaking gRPC (h2c)."""
    predictor = {**_scaling(section), "containers": [_kserve_container(section, "/models")],
                 "volumes": volumes(section), "securityContext": {"fsGroup": 10001}}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": object_metadata(section, annotations=_annotations(section)), "spec": {"predictor": predictor}}


def runtime_name(section: DeploymentSection) -> str:
    return f"{section.name}-runtime"


def serving_runtime(section: DeploymentSection) -> dict[str, Any]:
    """`hamnet serve` as a KServe ServingRuntime for the `hamnet` model format: the storage
    initializer fills /mnt/models with the repository at the InferenceService's storageUri."""
    serving = _kserve_container(section, KSERVE_MODELS_DIR)
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
            "metadata": {"name": runtime_name(section), "namespace": section.namespace,
                         "labels": {"app.kubernetes.io/name": section.name}},
            "spec": {"supportedModelFormats": [{"name": HAMNET_FORMAT, "version": "1", "autoSelect": True}],
                     "protocolVersions": ["grpc-v2"], "containers": [serving], "volumes": volumes(section)}}


def storage_inference_service(section: DeploymentSection) -> dict[str, Any]:
    """The InferenceService of the `hamnet` runtime on the repository at `storage_uri` (the
    pod's fsGroup here: a ServingRuntime has no pod security context, and the server's user
    reads the token Secret and the downloaded models through it)."""
    model = {"modelFormat": {"name": HAMNET_FORMAT, "version": "1"}, "runtime": runtime_name(section),
             "storageUri": section.storage_uri, "protocolVersion": "grpc-v2"}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": object_metadata(section, annotations=_annotations(section)),
            "spec": {"predictor": {**_scaling(section), "model": model, "securityContext": {"fsGroup": 10001}}}}


def triton_inference_service(section: DeploymentSection) -> dict[str, Any]:
    """Triton (KServe's `kserve-tritonserver` runtime, onnxruntime backend) on the Triton
    repository at `triton_storage_uri`, over the V2 protocol."""
    resources: dict[str, dict[str, str]] = {"requests": {"cpu": section.cpu, "memory": section.memory},
                                            "limits": {"memory": section.memory}}
    if section.gpus:
        resources["requests"]["nvidia.com/gpu"] = resources["limits"]["nvidia.com/gpu"] = str(section.gpus)
    model = {"modelFormat": {"name": "onnx"}, "runtime": TRITON_RUNTIME, "storageUri": section.triton_storage_uri,
             "protocolVersion": "v2", "resources": resources}
    metadata = {"name": f"{section.name}-triton", "namespace": section.namespace,
                "labels": {"app.kubernetes.io/name": f"{section.name}-triton"},
                "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": metadata,
            "spec": {"predictor": {**_scaling(section), "model": model}}}
