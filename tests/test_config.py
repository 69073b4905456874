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


def test_original_config_loads_as_is_with_notes(tmp_path):
    cfg = load_config(write(tmp_path, ORIGINAL_YAML), environ={})
    assert cfg.sections["pruning"]["target_sparsity"] == 0.5
    assert cfg.sections["deployment"]["api_port"] == 8000
    assert any("nas" in n for n in cfg.notes)
    # the training-optimization keys of the original config are implemented, not noted
    assert not any("precision_mode" in n for n in cfg.notes)
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
    ({"gradient_accumulation_steps": 0}, r"gradient_accumulation_steps: must be >= 1"),
])
def test_training_optimization_errors(tmp_path, training, match):
    import yaml

    with pytest.raises(InputError, match=match):
        load_config(write(tmp_path, yaml.safe_dump({"training": training})), environ={})


@pytest.mark.parametrize("text, match", [
    ("pruning:\n  target_sparsty: 0.5\n", r"section 'pruning': unknown key 'target_sparsty'"),
    ("training:\n  batch_sise: 3\n", r"section 'training': unknown key 'batch_sise'"),
    ("model:\n  hidden: 3\n", r"section 'model': unknown key 'hidden'"),
    ("trainin:\n  batch_size: 3\n", r"unknown section 'trainin'"),
    ("training: [1, 2]\n", r"section 'training' must be a mapping"),
    ("model:\n  dropout: 1.5\n", r"HAMNetConfig.dropout: must be in \[0, 1\), got 1.5"),
    ("model:\n  hidden_size: 64\n  num_heads: 5\n", r"5 heads do not divide embed_dim=64"),
    ("training:\n  batch_size: many\n", r"training.batch_size: expected int, got 'many'"),
    ("training:\n  loss: l7\n", r"training.loss: unknown loss 'l7'"),
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
    assert cfg.sections["optimization"] == {"enable_pruning": False, "enable_monitoring": True}
    assert cfg.sections["deployment"]["api_port"] == 9000


def test_bad_environment_values_are_named(tmp_path):
    with pytest.raises(InputError, match="HAMNET_ENABLE_MAGIC"):
        load_config(None, environ={"HAMNET_ENABLE_MAGIC": "1"})
    with pytest.raises(InputError, match="training.batch_size: expected int"):
        load_config(None, environ={"HAMNET_BATCH_SIZE": "lots"})


def test_model_width_must_match_data():
    cfg = load_config(None, environ={})
    import dataclasses

    cfg = dataclasses.replace(cfg, model={"tier": "base", "clinical_dim": 50})
    with pytest.raises(InputError, match="model.clinical_dim: the config says 50 but the data has 96"):
        cfg.model_config(clinical_dim=96, imaging_dim=10, genetic_dim=10, lifestyle_dim=4)
