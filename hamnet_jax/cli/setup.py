"""What each `hamnet` command reads of the config, and the setup every command runs."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from hamnet_jax.cli.third_party_warnings import log_third_party_warnings
from hamnet_jax.errors import InputError

# what each command reads of the config: section -> keys (None: all of them); only `train`
# chooses its run directory from general.output_dir
GENERAL = ("log_level", "device")
TRACKING = ("mlflow_uri", "mlflow_experiment")  # monitoring keys of the commands that log to MLflow
# the training keys a derived run's fine-tuning keeps (its stage sets epochs, batch size,
# learning rate, seed, warmup and early stopping; see training.fit_options)
EXECUTION = ("precision_mode", "param_dtype", "gradient_accumulation_steps", "gradient_checkpointing",
             "memory_efficient_attention", "enabled_strategies", "mesh", "bucket_by_visits", "visit_packing", "loss",
             "classification_weight", "selection_metric", "eval_batch_size", "mc_samples", "grad_clip_norm",
             "weight_decay")
# the inference keys a predictor reads; the batcher keys (max_queue_*, preferred_batch_sizes) are `serve`'s
PREDICTOR_KEYS = ("backend", "precision_mode", "batch_size", "dynamic_batching", "enable_caching", "cache_size",
                  "uncertainty", "mc_samples", "optimization_level", "intra_op_threads", "inter_op_threads",
                  "execution_providers")


def keys_of(section: str) -> tuple[str, ...]:
    from hamnet_jax.config.run_config import ORIGINAL
    from hamnet_jax.config.schema import keys

    return tuple(keys(ORIGINAL[section]))


USES: dict[str, dict[str, tuple[str, ...] | None]] = {
    "cohort": {"general": GENERAL},
    "train": {"model": None, "data": None, "training": None, "general": None, "regularization": None,
              "monitoring": TRACKING},
    "evaluate": {"general": GENERAL},
    "cv": {"model": None, "data": None, "training": None, "general": None, "regularization": None},
    "predict": {"general": GENERAL, "inference": PREDICTOR_KEYS},
    "export": {"general": GENERAL},
    "serve": {"general": GENERAL, "inference": None, "deployment": ("api_host", "api_port")},
    "deploy": {"general": GENERAL, "deployment": None},  # models' options: their inference.yaml
    "search": {"model": None, "data": None, "training": None, "general": None, "regularization": None,
               "nas": None, "hyperparameter_optimization": None, "monitoring": TRACKING},
    "loadtest": {"general": GENERAL},
    "drift": {"general": GENERAL},
    "bench": {"general": GENERAL, "benchmarking": None},
    "pipeline": {**{name: None for name in ("model", "data", "training", "general", "regularization", "optimization",
                                            "nas", "pruning", "quantization", "distillation", "pipeline")},
                 "hyperparameter_optimization": ("strategy", "max_trials", "max_epochs_per_trial"),
                 # (backend and precision: the benchmark's choice; output_dir: OUT/bench)
                 "inference": tuple(k for k in keys_of("inference") if k not in ("backend", "precision_mode")),
                 "benchmarking": tuple(k for k in keys_of("benchmarking") if k != "output_dir"),
                 "monitoring": ("alert_latency_p95_ms", "alert_error_rate", "alert_drift_psi", *TRACKING)},
    "prune": {"general": GENERAL, "pruning": None, "training": EXECUTION, "monitoring": TRACKING},
    "quantize": {"general": GENERAL, "quantization": None, "training": EXECUTION, "monitoring": TRACKING},
    "distill": {"general": GENERAL, "distillation": None,  # the distillation section sets weight decay
                "training": tuple(k for k in EXECUTION if k != "weight_decay"), "monitoring": TRACKING},
}


def _setup(args: argparse.Namespace):
    """Load the run config (file + HAMNET_* env), set logging and the JAX platform, and say
    once on stderr which of the given sections and keys this command does not use."""
    from hamnet_jax.config import load_config

    config = load_config(getattr(args, "config", None))
    logging.basicConfig(level=config.general.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    log_third_party_warnings()
    unused = config.unused(USES[args.command])
    if unused:
        print(f"hamnet {args.command}: note: config values not used by this command: {', '.join(unused)}",
              file=sys.stderr)
    import jax

    device = config.general.device.lower()
    if device != "auto":
        platform = {"gpu": "cuda"}.get(device, device)
        jax.config.update("jax_platforms", platform)
        try:
            jax.devices()
        except (RuntimeError, AssertionError):  # JAX asserts when the only platform asked for is absent
            raise InputError(f"general.device (or HAMNET_DEVICE) is {device!r} but JAX finds no {device} "
                             "on this machine; use auto or cpu, or install the matching jax extra") from None
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        # compiled steps are reused by the next command (train -> evaluate -> predict -> export)
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hamnet-jax" / "xla"
        jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return config


def data_schema(args: argparse.Namespace):
    """The schema of `--data`: `--schema`, else the sidecar beside the file; `--target` overrides."""
    from hamnet_jax.data.schema import Schema, sidecar_path

    path = Path(args.schema) if args.schema else sidecar_path(args.data)
    if not path.exists():
        raise InputError(f"no schema: {path} does not exist (pass --schema FILE)")
    return Schema.load(path).with_target(getattr(args, "target", None))


def job_metrics(port: int | None):
    """A training job's or a study's Prometheus metrics (`monitoring.metrics.JobMetrics`)
    served on `port` (0: a free one; None: off); where is said on stderr."""
    if port is None:
        return None
    if not 0 <= port <= 65535:
        raise InputError(f"--metrics-port {port}: expected a port in 0-65535 (0: a free one)")
    try:
        from hamnet_jax.monitoring.metrics import JobMetrics
    except ImportError as err:
        raise InputError(f"--metrics-port needs prometheus-client and scipy ({err}): "
                         "pip install 'hamnet-jax[monitoring]'") from None
    metrics = JobMetrics()
    print(f"metrics on http://127.0.0.1:{metrics.serve(port)}/metrics", file=sys.stderr, flush=True)
    return metrics


def add_tier_argument(parser: argparse.ArgumentParser) -> None:
    """--tier for the commands that train (train, cv)."""
    from hamnet_jax.models.config import TIERS

    parser.add_argument("--tier", choices=("auto", *TIERS),
                        help="model tier (auto, the default: standard, with the wide path fixed at its linear "
                             "fit below 4,000 training subjects)")
