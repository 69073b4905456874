import textwrap

import pytest

from hamnet_jax.config import load_config
from hamnet_jax.errors import InputError

ORIGINAL_YAML = textwrap.dedent("""
    optimization:
      enable_nas: true
      enable_hyperparameter_opt: true
      enable_pruning: true
      enable_distillation: true
      enable_regularization: true
      enable_training_opt: true
      enable_inference_opt: true
      enable_monitoring: true
      enable_benchmarking: true
    nas:
      search_strategy: "evolutionary"
      max_layers: 15
      min_layers: 5
      population_size: 30
      generations: 50
    hyperparameter_optimization:
      strategy: "bayesian"
      max_trials: 100
      max_epochs_per_trial: 50
    pruning:
      method: "magnitude"
      target_sparsity: 0.5
      pruning_schedule: "linear"
    quantization:
      mode: "dynamic"
      precision: "int8"
    training:
      precision_mode: "automatic_mixed"
      gradient_accumulation_steps: 4
      gradient_checkpointing: true
    deployment:
      environment: "docker"
      mode: "auto_scaling"
      api_port: 8000
      min_instances: 1
      max_instances: 5
    monitoring:
      log_level: "info"
      enable_metrics: true
      enable_alerting: true
      enable_ab_testing: true
""")


def write(tmp_path, text):
    path = tmp_path / "hamnet_config.yaml"
    path.write_text(text)
    return path


def test_original_config_loads_as_is_and_reports_what_train_ignores(tmp_path):
    from hamnet_jax.cli import USES

    cfg = load_config(write(tmp_path, ORIGINAL_YAML), environ={})
    assert cfg.sections["pruning"].target_sparsity == 0.5
    assert cfg.sections["deployment"].api_port == 8000
    unused = cfg.unused(USES["train"])
    assert "nas.max_layers" in unused and "deployment.api_port" in unused and "pruning.method" in unused
    # the training-optimization keys of the original config are implemented, so used
    assert not any(u.startswith("training.") for u in unused)
    assert cfg.unused(USES["prune"]) == [u for u in unused if not u.startswith("pruning.")]
    assert cfg.training.precision_mode == "mixed"
    assert cfg.training.gradient_accumulation_steps == 4
    assert cfg.training.gradient_checkpointing == "full"


@pytest.mark.parametrize("training, expect", [
    ({"enabled_strategies": ["gradient_checkpointing", "memory_efficient_attention", "dynamic_batching"]},
     {"gradient_checkpointing": "full", "memory_efficient_attention": "dot_product", "bucket_by_visits": True}),
    ({"enabled_strategies": ["fsdp"]}, {"mesh": {"fsdp": -1}}),
    ({"memory_efficient_attention": "blockwise", "gradient_checkpointing": "save_dots"},
     {"memory_efficient_attention": "blockwise", "gradient_checkpointing": "save_dots"}),
    ({"precision_mode": "BF16", "mesh": {"data": 4, "tensor": 2}},
     {"precision_mode": "bf16", "mesh": {"data": 4, "tensor": 2}}),
])
def test_training_optimization_keys(tmp_path, training, expect):
    import yaml

    cfg = load_config(write(tmp_path, yaml.safe_dump({"training": training})), environ={})
    for key, value in expect.items():
        assert getattr(cfg.training, key) == value


@pytest.mark.parametrize("training, match", [
    ({"precision_mode": "fp8"}, r"training.precision_mode: unknown mode 'fp8'"),
    ({"enabled_strategies": ["warp_drive"]}, r"unknown strategy 'warp_drive'"),
    ({"enabled_strategies": ["gradient_accumulation"]}, r"gradient_accumulation_steps is 1"),
    ({"enabled_strategies": ["tensor_parallel"]}, r"no 'tensor' axis"),
    ({"gradient_checkpointing": "sometimes"}, r"training.gradient_checkpointing: expected true/false"),
    ({"gradient_accumulation_steps": 0}, r"training.gradient_accumulation_steps: Input should be greater than or"),
])
def test_training_optimization_errors(tmp_path, training, match):
    import yaml

    with pytest.raises(InputError, match=match):
        load_config(write(tmp_path, yaml.safe_dump({"training": training})), environ={})


@pytest.mark.parametrize("text, match", [
    ("pruning:\n  target_sparsty: 0.5\n", r"config pruning.target_sparsty: unknown key"),
    ("training:\n  batch_sise: 3\n", r"config training.batch_sise: unknown key"),
    ("model:\n  hidden: 3\n", r"config model.hidden: unknown key"),
    ("trainin:\n  batch_size: 3\n", r"unknown section 'trainin'"),
    ("training: [1, 2]\n", r"section 'training' must be a mapping"),
    ("model:\n  dropout: 1.5\n", r"HAMNetConfig.dropout: must be in \[0, 1\), got 1.5"),
    ("model:\n  hidden_size: 64\n  num_heads: 5\n", r"5 heads do not divide embed_dim=64"),
    ("training:\n  batch_size: many\n", r"training.batch_size: Input should be a valid integer \(got 'many'\)"),
    ("training:\n  loss: l7\n",
     r"training.loss: Input should be 'gaussian_nll', 'beta_nll', 'mse' or 'huber' \(got 'l7'\)"),
])
def test_config_errors_name_key_and_section(tmp_path, text, match):
    with pytest.raises(InputError, match=match):
        load_config(write(tmp_path, text), environ={})


def test_environment_overrides_the_file(tmp_path):
    path = write(tmp_path, "training:\n  batch_size: 64\n  learning_rate: 0.01\n")
    env = {"HAMNET_BATCH_SIZE": "32", "HAMNET_NUM_EPOCHS": "7", "HAMNET_LOG_LEVEL": "DEBUG",
           "HAMNET_OUTPUT_DIR": "/tmp/out", "HAMNET_DEVICE": "cpu", "HAMNET_ENABLE_PRUNING": "false",
           "HAMNET_API_PORT": "9000", "HAMNET_ENABLE_MONITORING": "true", "UNRELATED": "x"}
    cfg = load_config(path, environ=env)
    assert cfg.training.batch_size == 32 and cfg.training.num_epochs == 7
    assert cfg.training.learning_rate == 0.01
    assert cfg.general.log_level == "DEBUG" and cfg.general.output_dir == "/tmp/out"
    assert cfg.given["optimization"] == ("enable_pruning", "enable_monitoring")
    assert not cfg.sections["optimization"].enable_pruning and cfg.sections["optimization"].enable_monitoring
    assert cfg.sections["deployment"].api_port == 9000


def test_bad_environment_values_are_named(tmp_path):
    with pytest.raises(InputError, match="HAMNET_ENABLE_MAGIC"):
        load_config(None, environ={"HAMNET_ENABLE_MAGIC": "1"})
    with pytest.raises(InputError, match="training.batch_size: Input should be a valid integer"):
        load_config(None, environ={"HAMNET_BATCH_SIZE": "lots"})


def test_model_width_must_match_data():
    cfg = load_config(None, environ={})
    import dataclasses

    cfg = dataclasses.replace(cfg, model={"tier": "base", "clinical_dim": 50})
    with pytest.raises(InputError, match="model.clinical_dim: the config says 50 but the data has 96"):
        cfg.model_config(clinical_dim=96, imaging_dim=10, genetic_dim=10, lifestyle_dim=4)


# (command line, the key the one stderr line must name): every bad value or impossible
# combination exits 2 with one line on stderr naming the key
BAD = [
    ("training:\n  batch_size: 3.7\n", [], "training.batch_size"),
    ("training:\n  num_epochs: '2.5'\n", [], "training.num_epochs"),
    ("training:\n  learning_rate: -1\n", [], "training.learning_rate"),
    ("training:\n  weight_decay: -0.1\n", [], "training.weight_decay"),
    ("training:\n  precision_mode: fp8\n", [], "training.precision_mode"),
    ("training:\n  mesh: {pipeline: 2}\n", [], "training.mesh"),
    ("training:\n  bucket_by_visits: maybe\n", [], "training.bucket_by_visits"),
    ("training:\n  param_dtype: int4\n", [], "training.param_dtype"),
    ("training:\n  early_stop_patience: -1\n", [], "training.early_stop_patience"),
    ("training:\n  num_epochs: 5\n  schedule_epochs: 3\n", [], "training.schedule_epochs"),
    ("data:\n  split: [0.5, 0.5, 0.5]\n", [], "data.split"),
    ("data:\n  max_visits: 0\n", [], "data.max_visits"),
    ("general:\n  log_level: LOUD\n", [], "general.log_level"),
    ("general:\n  device: abacus\n", [], "general.device"),
    ("model:\n  dropout: 1.5\n", [], "HAMNetConfig.dropout"),
    ("distillation:\n  method: nonsense\n", [], "distillation.method"),
    ("distillation:\n  temperature: -5\n", [], "distillation.temperature"),
    ("distillation:\n  alpha: 2\n", [], "distillation.alpha"),
    ("deployment:\n  api_port: not-a-port\n", [], "deployment.api_port"),
    ("deployment:\n  api_port: 70000\n", [], "deployment.api_port"),
    ("deployment:\n  min_instances: 3\n  max_instances: 2\n", [], "deployment.max_instances"),
    ("nas:\n  min_layers: 9\n  max_layers: 3\n", [], "nas.min_layers"),
    ("nas:\n  mutation_rate: 1.5\n", [], "nas.mutation_rate"),
    ("hyperparameter_optimization:\n  max_trials: 0\n", [], "hyperparameter_optimization.max_trials"),
    ("regularization:\n  enabled_techniques: [telepathy]\n", [], "regularization.enabled_techniques"),
    ("inference:\n  backend: abacus\n", [], "inference.backend"),
    ("monitoring:\n  enable_metrics: sometimes\n", [], "monitoring.enable_metrics"),
    ("benchmarking:\n  batch_sizes: [0]\n", [], "benchmarking.batch_sizes"),
    ("pruning:\n  target_sparsity: 1.2\n", [], "pruning.target_sparsity"),
    ("quantization:\n  precision: fp16\n  mode: static\n", [], "quantization.precision"),
    ("quantization:\n  candidate_bits: [1]\n", [], "quantization.candidate_bits"),
    ("", ["prune", "--method", "structured", "--schedule", "linear"], "pruning.pruning_schedule"),
    ("", ["prune", "--method", "snip", "--schedule", "one_shot"], "pruning.pruning_schedule"),
    ("", ["prune", "--cycles", "3", "--schedule", "linear"], "pruning.pruning_schedule"),
    ("pruning:\n  structures: [heads]\n", ["prune", "--method", "magnitude"], "pruning.structures"),
    ("", ["quantize", "--mode", "dynamic", "--calibration", "percentile"], "quantization.calibration_method"),
    ("", ["quantize", "--mode", "static", "--precision", "bf16"], "quantization.precision"),
    ("quantization:\n  qat_epochs: 2\n", ["quantize", "--mode", "dynamic"], "quantization.qat_epochs"),
    ("", ["quantize", "--mode", "dynamic", "--accumulation-steps", "2"], "--accumulation-steps"),
    ("", ["distill", "--method", "self_distillation", "--ratio", "0.5"], "distillation.compression_ratio"),
    ("", ["distill", "--method", "born_again", "--ratio", "0.5"], "distillation.compression_ratio"),
    ("distillation:\n  ema_decay: 0.9\n", ["distill", "--method", "soft_target"], "distillation.ema_decay"),
    ("", ["distill", "--temperature", "-5"], "distillation.temperature"),
]


@pytest.mark.parametrize("text, argv, key", BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_values_and_combinations_exit_2_naming_the_key(tmp_path, capsys, monkeypatch, text, argv, key):
    from hamnet_jax.cli import main

    for var in [v for v in __import__("os").environ if v.startswith("HAMNET_")]:
        monkeypatch.delenv(var)
    config = write(tmp_path, text or "general:\n  log_level: WARNING\n")
    command = argv or ["train", "--data", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "run")]
    if argv:
        command = argv[:1] + ["--run", str(tmp_path / "no-run"), "--data", str(tmp_path / "none.parquet"),
                              "--out", str(tmp_path / "out")] + argv[1:]
    assert main(command + ["--config", str(config)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and key in err[0], err


def test_gpu_device_without_a_gpu_exits_2_naming_the_setting(tmp_path, capsys, monkeypatch):
    import jax

    if jax.default_backend() == "gpu":
        pytest.skip("this machine has a GPU")
    from hamnet_jax.cli import main

    monkeypatch.setenv("HAMNET_DEVICE", "gpu")
    code = __import__("subprocess").run(
        [__import__("sys").executable, "-m", "hamnet_jax.cli", "cohort", "--subjects", "10", "--out",
         str(tmp_path / "c.parquet")], capture_output=True, text=True)
    assert code.returncode == 2 and "general.device" in code.stderr and code.stderr.count("\n") == 1, code.stderr
    del main


def test_regularization_technique_names_match_the_transforms():
    from hamnet_jax.config import REGULARIZATION_TECHNIQUES, REGRESSION_LOSSES
    from hamnet_jax.transforms.losses import REGRESSION_LOSSES as implemented
    from hamnet_jax.transforms.regularization import RegularizationType

    assert REGULARIZATION_TECHNIQUES == tuple(t.value for t in RegularizationType)
    assert REGRESSION_LOSSES == implemented
