"""The HAMNet search spaces: architecture (the `model:` keys NAS varies) and training (the
`training:` keys HPO varies). A point of either is a mapping of those keys, applied to a
run's config as it is; users declare their own spaces in YAML (`SearchSpace.from_dict`).

Architecture: embedding width, heads, fusion layers (bounded by `nas.min_layers` /
`nas.max_layers`), temporal layers, MLP ratio, the clinical encoder's width, the imaging
and genetic token group sizes, the attention kernel, dropout. Training: learning rate,
batch size, weight decay, warm-up, loss, compute precision.
"""

from __future__ import annotations

from hamnet_jax.errors import InputError
from hamnet_jax.search.space import Choice, Float, Int, SearchSpace


def architecture_space(min_layers: int = 1, max_layers: int = 4) -> SearchSpace:
    if not 1 <= min_layers <= max_layers:
        raise InputError(f"nas.min_layers / max_layers: need 1 <= min <= max, got {min_layers}, {max_layers}")
    return SearchSpace({
        "embed_dim": Choice([32, 48, 64, 96, 128]),
        "num_heads": Choice([1, 2, 4, 8]),
        "num_layers": Int(min_layers, max_layers),
        "temporal_layers": Int(1, 3),
        "mlp_ratio": Choice([1, 2, 4]),
        "clinical_hidden_dim": Choice([32, 64, 128, 256]),
        "imaging_group_size": Choice([16, 32, 64]),
        "genetic_group_size": Choice([32, 64, 128]),
        "attention": Choice(["naive", "dot_product"]),
        "dropout": Float(0.0, 0.3),
    })


def training_space() -> SearchSpace:
    return SearchSpace({
        "learning_rate": Float(1e-4, 1e-2, log=True),
        "batch_size": Choice([32, 64, 128, 256]),
        "weight_decay": Float(1e-6, 1e-2, log=True),
        "warmup_epochs": Float(0.0, 3.0),
        "loss": Choice(["gaussian_nll", "mse", "huber"]),
        "precision_mode": Choice(["fp32", "bf16"]),
    })
