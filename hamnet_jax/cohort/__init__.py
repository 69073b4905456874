"""The synthetic cohorts (the embedded default data): the default UK Biobank-style world with a
known latent biological age, the frailty world, the interaction world, their feature names and
the file writer."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "CohortDims": "default",
    "DEFAULT_SUBJECTS": "default",
    "generate_cohort": "default",
    "write_cohort": "file",
    "generate_frailty_cohort": "frailty",
    "generate_interactions_cohort": "interactions",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
