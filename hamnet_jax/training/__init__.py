"""`fit`, the one training loop, and what it is built from: steps, plans, precision, sharding,
multi-host, checkpoints, cross-validation, `train_run` (a run directory from a data file)."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "Checkpoints": "checkpoints",
    "initialize_distributed": "distributed",
    "FitOptions": "fit_options",
    "FitResult": "loop",
    "fit": "loop",
    "Plan": "plan",
    "DynamicLossScale": "precision",
    "PrecisionPolicy": "precision",
    "resolve_policy": "precision",
    "make_mesh": "sharding",
    "OptimizerConfig": "state",
    "TrainState": "state",
    "create_train_state": "state",
    "eval_step": "steps",
    "train_step": "steps",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
