"""One typed schema per section of `hamnet_config.yaml` (the original framework's keys, plus
this version's). Values are checked for type, range and allowed names when the section is
built; `run_config` reports which sections and keys the running command does not use."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from hamnet_jax.config.schema import Bool, Fraction, NonNegativeInt, Port, PositiveInt, section, set_field
from hamnet_jax.config.strategies import PrecisionMode, resolve_training_options

# a URI KServe's storage initializer downloads from (empty: none)
StorageUri = Annotated[str, Field(pattern=r"^$|^(s3|gs|pvc|hdfs|webhdfs|https?|oci)://[^\s]+$")]

REGRESSION_LOSSES = ("gaussian_nll", "beta_nll", "mse", "huber")  # transforms.losses implements each (tested)
DEVICES = ("auto", "cpu", "gpu", "cuda", "tpu")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# the original framework's RegularizationType names (transforms.regularization; tested equal)
REGULARIZATION_TECHNIQUES = (
    "dropout", "gaussian_dropout", "alpha_dropout", "dropconnect", "stochastic_depth", "weight_decay", "l1", "l2",
    "elastic_net", "spectral_norm", "label_smoothing", "mixup", "cutmix", "modality_dropout", "randaugment",
    "adversarial", "pgd", "vat", "manifold", "information_bottleneck", "consistency")


def log_level(section: str, value: str) -> str:
    """A logging level name, any case."""
    if value.upper() not in LOG_LEVELS:
        raise ValueError(f"{section}.log_level: unknown level {value!r}; expected one of {list(LOG_LEVELS)}")
    return value


def _switch(value: Any) -> str:
    """A feature that takes true/false or a name."""
    return str(value).lower() if isinstance(value, bool) else value


@section("training")
class TrainingConfig:
    batch_size: PositiveInt = 128
    learning_rate: Annotated[float, Field(gt=0)] = 2e-3
    num_epochs: PositiveInt = 40
    weight_decay: Annotated[float, Field(ge=0)] = 1e-2
    warmup_epochs: Annotated[float, Field(ge=0)] = 1.0
    # the learning-rate schedule's length in epochs (0: num_epochs). A run trained in pieces
    # (a search trial promoted from 1 to 3 to 9 epochs) sets it to the final length, so each
    # piece continues one warm-up + cosine schedule instead of restarting a shorter one
    schedule_epochs: NonNegativeInt = 0
    grad_clip_norm: Annotated[float, Field(gt=0)] = 1.0
    early_stop_patience: NonNegativeInt = 8
    # > 0: validation, the chosen epoch and the saved model use a moving average of the weights
    # spanning this many epochs (training/weight_averaging.py); 0: the last step's weights.
    # 1.5 lowers the test MAE on every world and table of bench_model_quality.json, but not
    # the quick pipeline's short compressed fits, so the default stays 0 (docs/measurements.md)
    weight_average_epochs: Annotated[float, Field(ge=0)] = 0.0
    # beta-NLL (Seitzer et al. 2022) by default: the Gaussian NLL weighted by the predicted
    # variance^beta, so hard subjects cannot buy a low loss with a wide variance while the mean
    # is still wrong (bench_model_quality.json: the lower test MAE on the frailty and the
    # interaction worlds, a tie on the default one)
    loss: Literal["gaussian_nll", "beta_nll", "mse", "huber"] = "beta_nll"
    # the validation metric that picks the best epoch and drives early stopping: the NLL
    # (val_loss; an outcome-only model's log loss), or val_mae, which protects the mean from
    # a variance head that wins the NLL early while the mean is still learning; auto: val_mae
    # with a regression head, else val_loss (`selection_for`)
    selection_metric: Literal["auto", "val_loss", "val_mae"] = "auto"
    classification_weight: Annotated[float, Field(ge=0)] = 1.0
    # where the wide path (model.wide) starts: zeros (the deep model alone), or fitted: a ridge
    # / L2-logistic fit on the training split, the deep heads zeroed, so training starts from
    # the linear model and the deep part learns what it misses (training/wide_start.py)
    wide_start: Literal["zeros", "fitted"] = "zeros"
    seed: NonNegativeInt = 0
    mc_samples: PositiveInt = 20
    eval_batch_size: PositiveInt = 512
    # training optimization (the original framework's names; see config/strategies.py)
    precision_mode: str = "fp32"  # fp32 | bf16 | fp16 (dynamic loss scaling) | mixed
    param_dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # weights; biases and norms stay float32
    gradient_accumulation_steps: PositiveInt = 1
    gradient_checkpointing: str | bool = "none"  # none | full | save_dots (true = full)
    memory_efficient_attention: str | bool = "naive"  # naive | dot_product | blockwise (true = dot_product)
    enabled_strategies: tuple[str, ...] = ()
    mesh: dict[str, int] = Field(default_factory=lambda: {"data": -1})  # data / fsdp / tensor sizes
    bucket_by_visits: Bool = False  # dynamic batching: batches of similar visit counts, trimmed
    # the per-visit encoders and the fusion run on the batch's real visits only, not on every
    # visit slot (models/hamnet.py "visit packing"; same results, less work)
    visit_packing: Bool = True
    memory_budget_mb: Annotated[float, Field(ge=0)] = 0.0  # > 0: batch size = largest that fits
    # training batches read, standardized and put on the devices ahead of the step, on a
    # background thread (training/prefetch.py); 0: each one when the step asks for it
    prefetch_batches: NonNegativeInt = 2
    # the training step's dropout-mask generator: threefry (jax.random's default), or rbg /
    # unsafe_rbg (XLA's RngBitGenerator; training/sharded_setup.py `step_dropout_key`)
    dropout_rng: Literal["threefry", "rbg", "unsafe_rbg"] = "threefry"

    @field_validator("gradient_checkpointing", "memory_efficient_attention", mode="before")
    @classmethod
    def _bool_or_name(cls, value: Any) -> Any:
        return _switch(value)

    @field_validator("mesh")
    @classmethod
    def _mesh(cls, value: dict[str, int]) -> dict[str, int]:
        for axis, size in value.items():
            if axis not in ("data", "fsdp", "tensor"):
                raise ValueError(f"training.mesh: unknown axis {axis!r}; expected data, fsdp or tensor")
            if size == 0 or size < -1:
                raise ValueError(f"training.mesh.{axis}: size must be >= 1 or -1 (the rest), got {size}")
        return value

    @model_validator(mode="after")
    def _resolve(self) -> TrainingConfig:
        if 0 < self.schedule_epochs < self.num_epochs:
            raise ValueError(f"training.schedule_epochs: {self.schedule_epochs} is shorter than num_epochs "
                             f"({self.num_epochs}); the schedule must cover every epoch (0 = num_epochs)")
        values = {k: getattr(self, k) for k in ("precision_mode", "gradient_checkpointing",
                                                "memory_efficient_attention", "enabled_strategies", "mesh",
                                                "bucket_by_visits", "gradient_accumulation_steps")}
        resolved = resolve_training_options(values)
        resolved["precision_mode"] = PrecisionMode.parse(resolved["precision_mode"]).value
        for key, value in resolved.items():
            set_field(self, key, value)
        return self

    def selection_for(self, regression: bool) -> str:
        """The metric that selects the epoch of a model with (or without) a regression head."""
        if self.selection_metric == "auto":
            return "val_mae" if regression else "val_loss"
        return self.selection_metric


@section("data")
class DataConfig:
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: NonNegativeInt = 0
    max_visits: PositiveInt = 4
    # k-fold cross-validation (`hamnet cv` sets them): with cv_folds >= 2, fold cv_fold is the
    # test set and `split`'s train:val ratio divides the rest (data/split.py `kfold_split`)
    cv_folds: NonNegativeInt = 0
    cv_fold: NonNegativeInt = 0
    # `hamnet train` reads the file once, in chunks, into the shared memory-mapped cohort cache
    # (data/cohort_cache.py) and trains from it with bounded memory; false: all in memory
    cache: bool = True
    # the cohort cache's folder (default: cohorts/ under $HAMNET_CACHE_DIR, else ~/.cache/hamnet), shared by every run
    cache_dir: str | None = None

    @field_validator("split")
    @classmethod
    def _split(cls, split: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(split) < 0 or abs(sum(split) - 1) > 1e-6 or split[0] == 0:
            raise ValueError(f"data.split: expected three fractions (train, val, test) summing to 1, got {split}")
        return split

    @model_validator(mode="after")
    def _folds(self) -> DataConfig:
        if self.cv_folds == 1:
            raise ValueError("data.cv_folds: 1 fold is no cross-validation; use 0 (off, the split above) or >= 2")
        if self.cache_dir and not self.cache:
            raise ValueError("data.cache_dir: names where the cohort cache lives, and data.cache is false (the file "
                             "is read into memory); drop one of them")
        if self.cv_folds and self.cv_fold >= self.cv_folds:
            raise ValueError(f"data.cv_fold: {self.cv_fold} is not a fold of cv_folds={self.cv_folds} "
                             f"(0-{self.cv_folds - 1})")
        return self


@section("general")
class GeneralConfig:
    log_level: str = "INFO"
    output_dir: str = "runs"
    device: str = "auto"

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        return log_level("general", value)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value.lower() not in DEVICES:
            raise ValueError(f"general.device: expected auto, cpu, gpu/cuda or tpu, got {value!r}")
        return value


@section("optimization")
class OptimizationSection:
    enable_nas: Bool = False
    enable_hyperparameter_opt: Bool = False
    enable_pruning: Bool = False
    enable_distillation: Bool = False
    enable_regularization: Bool = False
    enable_training_opt: Bool = False
    enable_inference_opt: Bool = False
    enable_monitoring: Bool = False
    enable_benchmarking: Bool = False
    # this version's: the pipeline's quantize stage (None: with enable_pruning, as the original's
    # pruning_quantization module does both)
    enable_quantization: Bool | None = None

    @property
    def quantization(self) -> bool:
        return self.enable_pruning if self.enable_quantization is None else self.enable_quantization


PIPELINE_EXPORTS = ("onnx", "onnx-fp16", "onnx-int8", "onnx-int8-dynamic", "tensorrt", "tensorrt-int8")


@section("pipeline")
class PipelineSection:
    """What `hamnet pipeline` compares and keeps (hamnet_jax/pipeline): the accuracy the
    optimized model may give up (relative test MAE; it also picks NAS's architecture: the
    fewest FLOPs within it of the best validation MAE), the NAS
    objectives, the search spaces (a YAML space, `name: {type, low, high, options, ...}`;
    None: the built-in ones), the formats the export stage writes (the fastest within the
    tolerance is served) and the served model's name. The baseline is the `model:` section
    as given (tier `auto`: standard)."""

    accuracy_tolerance: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.02
    nas_objectives: Annotated[tuple[str, ...], Field(min_length=1)] = ("val_mae", "flops")
    search_min_epochs: PositiveInt = 1
    # epochs the baseline teaches the pruned model after its fine-tuning (0: none); the
    # distillation section's method, temperature and alpha
    prune_teacher_epochs: NonNegativeInt = 3
    search_workers: PositiveInt = 1  # trials at once (local processes)
    # trials' worker processes compile with search.fast_compile's flags (needs search_workers >= 2 and no
    # latency_ms objective: latency under them is not the optimized program's)
    search_fast_compile: Bool = False
    nas_space: dict[str, dict[str, Any]] | None = None
    hpo_space: dict[str, dict[str, Any]] | None = None
    export_formats: Annotated[tuple[Literal[PIPELINE_EXPORTS], ...], Field(min_length=1)] = (  # type: ignore[valid-type]
        "onnx", "onnx-int8-dynamic")
    model_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] = "hamnet"

    @field_validator("nas_objectives")
    @classmethod
    def _minimized(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(":" in name for name in value):
            raise ValueError(f"pipeline.nas_objectives: {list(value)}: give metric names (each is minimized: "
                             "accuracy first, then cost)")
        return value


@section("nas")
class NASSection:
    search_strategy: Literal["evolutionary", "random", "bayesian", "differentiable", "reinforcement"] = "evolutionary"
    max_layers: PositiveInt = 15
    min_layers: PositiveInt = 5
    population_size: PositiveInt = 30
    generations: PositiveInt = 50
    mutation_rate: Fraction = 0.1
    crossover_rate: Fraction = 0.5

    @model_validator(mode="after")
    def _layers(self) -> NASSection:
        if self.min_layers > self.max_layers:
            raise ValueError(f"nas.min_layers ({self.min_layers}) is larger than nas.max_layers ({self.max_layers})")
        return self


@section("hyperparameter_optimization")
class HyperparameterSection:
    strategy: Literal["bayesian", "random", "grid", "evolutionary", "hyperband", "asha"] = "bayesian"
    max_trials: PositiveInt = 100
    max_epochs_per_trial: PositiveInt = 50
    early_stop_patience: NonNegativeInt = 5


@section("regularization")
class RegularizationSection:
    dropout_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-4
    label_smoothing: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.0
    mixup_alpha: Annotated[float, Field(ge=0.0)] = 0.2
    enabled_techniques: tuple[str, ...] = ()

    @field_validator("enabled_techniques")
    @classmethod
    def _techniques(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        value = tuple(str(v).lower() for v in value)
        unknown = [v for v in value if v not in REGULARIZATION_TECHNIQUES]
        if unknown:
            raise ValueError(f"regularization.enabled_techniques: unknown {unknown}; expected some of "
                             f"{list(REGULARIZATION_TECHNIQUES)}")
        return value


@section("inference")
class InferenceSection:
    """How a run is served (inference/predictors.py): backend, precision, the largest
    batch, batch-size buckets and, in `hamnet serve`, the server's request batcher
    (`dynamic_batching`; else every request pads to `batch_size`), the per-subject
    result cache, the uncertainty (`uncertainty`: distilled or MC dropout) and MC samples
    (None = the run's, 0 = deterministic), ONNX Runtime's
    session options and execution providers (cuda / tensorrt need onnxruntime-gpu)."""

    backend: Literal["jax", "onnxruntime", "tensorrt"] = "jax"
    precision_mode: Literal["fp32", "fp16", "bf16", "int8", "int8-dynamic"] = "fp32"
    batch_size: PositiveInt = 64
    dynamic_batching: Bool = True
    enable_caching: Bool = False
    cache_size: PositiveInt = 10_000
    # the spreads (inference/raw_model.py): auto = the run's distilled MC spread (one pass) when it
    # has one and mc_samples is unset, else MC dropout; mc = MC dropout; distilled = the distilled spread
    uncertainty: Literal["auto", "distilled", "mc"] = "auto"
    mc_samples: NonNegativeInt | None = None
    optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    intra_op_threads: NonNegativeInt = 0
    inter_op_threads: NonNegativeInt = 0
    execution_providers: tuple[Literal["cpu", "cuda", "tensorrt"], ...] = ("cpu",)  # ONNX Runtime, by preference
    # ONNX Runtime with dynamic batching: batch sizes that get a session of their own with the batch
    # fixed (ONNX Runtime alone is 3-19% faster a call; each session costs ~13 MiB and more heap at each
    # reload, and the service measured no faster: experiments/bench_onnx_sessions.py); every other size
    # runs unpadded on one session of symbolic batch
    fixed_batch_sessions: tuple[PositiveInt, ...] = ()
    # the server's dynamic batcher (serving/batcher.py), on with dynamic_batching
    max_queue_delay_us: NonNegativeInt = 500
    preferred_batch_sizes: tuple[PositiveInt, ...] = ()
    max_queue_size: PositiveInt = 1024
    # limits a client cannot pass (serving): subjects in one request (INVALID_ARGUMENT above it), and
    # bytes of validated requests waiting in one model version's batcher queue (RESOURCE_EXHAUSTED)
    max_subjects_per_request: PositiveInt = 4096
    max_queued_bytes: PositiveInt = 256 << 20

    @model_validator(mode="after")
    def _fixed_batches(self) -> InferenceSection:
        if self.fixed_batch_sessions and not (self.backend == "onnxruntime" and self.dynamic_batching):
            raise ValueError("inference.fixed_batch_sessions applies to backend onnxruntime with dynamic_batching "
                             f"(here backend {self.backend}, dynamic_batching {self.dynamic_batching}): drop it")
        over = [b for b in self.fixed_batch_sessions if b > self.batch_size]
        if over:
            raise ValueError(f"inference.fixed_batch_sessions: {over} exceed inference.batch_size "
                             f"({self.batch_size}), the largest batch a call runs")
        return self


@section("deployment")
class DeploymentSection:
    environment: Literal["local", "docker", "kubernetes", "cloud"] = "local"
    mode: Literal["single", "load_balanced", "auto_scaling"] = "single"
    api_host: str = "127.0.0.1"
    api_port: Port = 8000
    enable_monitoring: Bool = False
    min_instances: PositiveInt = 1
    max_instances: PositiveInt = 1
    # this version's: what the generated Dockerfile and manifests need (hamnet_jax/deployment)
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] = "hamnet"
    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] = "default"
    image: Annotated[str, Field(min_length=1)] = "hamnet-jax:latest"
    metrics_port: Port = 8002
    cpu: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?m?$")] = "2"
    memory: Annotated[str, Field(pattern=r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$")] = "4Gi"
    gpus: NonNegativeInt = 0
    target_cpu_utilization: Annotated[StrictInt, Field(ge=1, le=100)] = 70
    # KServe: models pulled from storage by its storage initializer (s3://, gs://, pvc://, https://, ...):
    # `storage_uri` a model repository of run directories (`hamnet serve`), `triton_storage_uri` a Triton
    # model repository (`hamnet export --format triton`); `kserve_models: image` bakes them into the image
    storage_uri: StorageUri = ""
    triton_storage_uri: StorageUri = ""
    kserve_models: Literal["storage", "image"] = "storage"

    @model_validator(mode="after")
    def _instances(self) -> DeploymentSection:
        if self.max_instances < self.min_instances:
            raise ValueError(f"deployment.max_instances ({self.max_instances}) is below deployment.min_instances "
                             f"({self.min_instances})")
        if self.metrics_port == self.api_port:
            raise ValueError(f"deployment.metrics_port and deployment.api_port are both {self.api_port}")
        given = [k for k in ("storage_uri", "triton_storage_uri") if getattr(self, k)]
        if self.kserve_models == "image" and given:
            raise ValueError(f"deployment.{given[0]}: KServe pulls no models from storage with kserve_models: "
                             "image (the repository is baked into the image); drop one of them")
        return self


@section("monitoring")
class MonitoringSection:
    log_level: str = "info"
    enable_metrics: Bool = False
    enable_alerting: Bool = False
    enable_ab_testing: Bool = False
    # this version's: where metrics are served, where A/B experiments live, alert thresholds
    metrics_port: Annotated[StrictInt, Field(ge=0, le=65535)] = 8003  # 0: a free port
    ab_test_dir: Annotated[str, Field(min_length=1)] = "ab_tests"
    alert_latency_p95_ms: Annotated[float, Field(gt=0.0)] = 50.0
    alert_error_rate: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.01
    alert_drift_psi: Annotated[float, Field(gt=0.0)] = 0.2
    # experiment tracking (opt-in; `--mlflow-uri` overrides): train, compression, search and the pipeline
    # log their runs to this MLflow tracking server (http://...) or store (file:..., sqlite:...)
    mlflow_uri: str = ""
    mlflow_experiment: Annotated[str, Field(min_length=1)] = "hamnet"

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        return log_level("monitoring", value)


@section("benchmarking")
class BenchmarkingSection:
    """What `hamnet bench` measures (hamnet_jax/bench/suite.py)."""

    benchmark_types: tuple[Literal["latency", "throughput", "memory", "accuracy", "scalability"], ...] = (
        "latency", "throughput", "memory", "accuracy", "scalability")
    num_iterations: PositiveInt = 50
    batch_sizes: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (1, 8, 32, 256)
    output_dir: Annotated[str, Field(min_length=1)] = "benchmarks"
    enable_profiling: Bool = False
    monitor_hardware: Bool = True
    # this version's: the service's load levels (concurrent clients) and seconds per level
    concurrency: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (1, 10, 50)
    load_duration_s: Annotated[float, Field(gt=0)] = 5.0
