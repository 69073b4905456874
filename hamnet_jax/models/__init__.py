"""Flax linen modules: HAMNet and its parts, its config and tiers, MC-dropout uncertainty."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "HAMNetConfig": "config",
    "TIERS": "config",
    "CrossModalFusion": "fusion",
    "HAMNet": "hamnet",
    "init_params": "hamnet",
    "param_logical_axes": "hamnet",
    "param_shapes": "hamnet",
    "BlockConfig": "layers",
    "GatedAttentionBlock": "layers",
    "TemporalEncoder": "temporal",
    "predict_with_uncertainty": "uncertainty",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
