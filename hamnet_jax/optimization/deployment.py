"""`HAMNetDeploymentManager`: the original framework's deployment facade.

    from hamnet_jax.optimization.deployment import (
        DeploymentConfig, DeploymentEnvironment, DeploymentMode, HAMNetDeploymentManager)

    deploy_config = DeploymentConfig(environment=DeploymentEnvironment.KUBERNETES,
                                     mode=DeploymentMode.AUTO_SCALING, api_port=8001,
                                     enable_monitoring=True, min_instances=1, max_instances=5)
    manager = HAMNetDeploymentManager("model_repository", deploy_config, output_dir="deploy")
    manager.generate_dockerfile()              # serving/Dockerfile, serving/Dockerfile.dockerignore
    manager.generate_kubernetes_manifests()    # serving/kubernetes.yaml, serving/kserve*.yaml
    manager.deploy()                           # the repository given first

`DeploymentConfig` takes the `deployment:` section's keys; the work is in `hamnet_jax.deployment` (generation and
checks) and `hamnet_jax.serving` (the server). `deploy` acts per environment: local
starts the server in this process (returns the running server); docker builds the image
and runs it with the `docker` CLI; kubernetes applies the manifests with `kubectl`; cloud
applies the KServe manifests with `kubectl` (models from `storage_uri` unless
`kserve_models: image`). A missing CLI is an error naming it.
"""

from __future__ import annotations

import enum
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hamnet_jax.config import section_from_keywords
from hamnet_jax.config.sections import DeploymentSection, InferenceSection
from hamnet_jax.deployment.dockerfile import TOKEN_FILE, api_token_file, dockerfile, dockerignore
from hamnet_jax.deployment.kserve import kserve_documents, require_storage
from hamnet_jax.deployment.kubernetes import check_manifests, manifests, to_yaml
from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import write_text_atomic

__all__ = ["DeploymentConfig", "DeploymentEnvironment", "DeploymentMode", "HAMNetDeploymentManager"]


class DeploymentEnvironment(enum.StrEnum):
    LOCAL = "local"
    DOCKER = "docker"
    KUBERNETES = "kubernetes"
    CLOUD = "cloud"


class DeploymentMode(enum.StrEnum):
    SINGLE = "single"
    LOAD_BALANCED = "load_balanced"
    AUTO_SCALING = "auto_scaling"


def DeploymentConfig(**keys: Any) -> DeploymentSection:  # noqa: N802 - the original framework's name
    """The `deployment:` section from keyword arguments (enums or their values), checked
    like the YAML section (`load_config(path).section("deployment")` reads a file's)."""
    return section_from_keywords("deployment", keys, "DeploymentConfig")


class HAMNetDeploymentManager:
    def __init__(self, repository: str | Path | None = None, deploy_config: DeploymentSection | None = None,
                 output_dir: str | Path = "deploy", inference: InferenceSection | None = None) -> None:
        # the original's first argument names the models: here the model repository deploy() serves
        if repository is not None and not isinstance(repository, (str, Path)):
            raise InputError(f"HAMNetDeploymentManager: the first argument is the model repository directory "
                             f"(<model>/<version>/ runs) to deploy, got {type(repository).__name__}")
        self.repository = Path(repository) if repository is not None else None
        self.config = deploy_config or DeploymentSection()
        self.inference = inference
        self.output_dir = Path(output_dir)

    def generate_dockerfile(self) -> Path:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.output_dir / "Dockerfile.dockerignore", dockerignore())  # BuildKit reads it for -f
        path = self.output_dir / "Dockerfile"
        write_text_atomic(path, dockerfile(self.config))
        return path

    def generate_kubernetes_manifests(self) -> dict[str, Path]:
        """kubernetes.yaml (Deployment, Service, HPA, PDB) and the KServe manifests
        (deployment/kserve.py: kserve.yaml, kserve-triton.yaml, as the section asks), every
        one checked; returns file stem -> path."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        files = {"kubernetes.yaml": manifests(self.config), **kserve_documents(self.config)}
        for documents in files.values():
            check_manifests(documents, self.config)
        out = {}
        for name, documents in files.items():
            out[name.removesuffix(".yaml")] = self.output_dir / name
            write_text_atomic(out[name.removesuffix(".yaml")], to_yaml(documents))
        return out

    def deploy(self, repository: str | Path | None = None, context: str | Path = ".") -> Any:
        """Deploy per `environment` (see the module docstring); returns the running server
        (local) or the completed commands."""
        repository = repository or self.repository or "model_repository"
        env = self.config.environment
        if env == "local":
            from hamnet_jax.serving.repository import Repository
            from hamnet_jax.serving.server import start_server

            repo = Repository(Path(repository), self.inference)
            for name in repo.available():
                repo.load(name)
            metrics = self.config.metrics_port if self.config.enable_monitoring else None
            return start_server(repo, self.config.api_host, self.config.api_port, metrics_port=metrics)
        if env == "docker":
            dockerfile_path = self.generate_dockerfile()
            target = "gpu" if self.config.gpus else "cpu"
            build_cmd = ["docker", "build", "-f", str(dockerfile_path), "--target", target, "--build-arg",
                         f"MODEL_REPOSITORY={repository}", "-t", self.config.image, str(context)]
            ports = ["-p", f"{self.config.api_port}:{self.config.api_port}"]
            if self.config.enable_monitoring:
                ports += ["-p", f"{self.config.metrics_port}:{self.config.metrics_port}"]
            gpus = ["--gpus", "all"] if self.config.gpus else []
            token = api_token_file(dockerfile_path.parent / "api-token")
            secret = ["-v", f"{token.resolve()}:{TOKEN_FILE}:ro"]  # the container serves with --token-file
            run_cmd = ["docker", "run", "-d", "--name", self.config.name, *ports, *gpus, *secret, self.config.image]
            return [_run(build_cmd), _run(run_cmd)]
        if env == "cloud":
            require_storage(self.config)
        paths = self.generate_kubernetes_manifests()
        applied = [p for name, p in paths.items() if name.startswith("kserve")] if env == "cloud" else \
            [paths["kubernetes"]]
        return [_run(["kubectl", "apply", "-f", str(p)]) for p in applied]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    if shutil.which(command[0]) is None:
        raise InputError(f"deploy needs the `{command[0]}` command, which is not installed here "
                         f"(it would run: {' '.join(command)})")
    return subprocess.run(command, check=True)
