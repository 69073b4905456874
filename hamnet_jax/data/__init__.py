"""User files -> arrays: schema, tables, arrays, the cohort cache and its batches, preprocessing,
splits, the data profile, and the synthetic cohorts."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "CohortArrays": "arrays",
    "frame_to_arrays": "arrays",
    "Batch": "batch",
    "random_batch": "batch",
    "validate_batch": "batch",
    "compile_ahead": "batched",
    "map_batched": "batched",
    "CohortBatches": "cohort_batches",
    "model_input": "cohort_batches",
    "CachedCohort": "cohort_cache",
    "build_cohort_cache": "cohort_cache",
    "load_cohort_cache": "cohort_cache",
    "load_cohort": "dataset",
    "open_cohort": "dataset",
    "split_cohort": "dataset",
    "Preprocessor": "preprocess",
    "DataProfile": "profile",
    "Schema": "schema",
    "kfold_split": "split",
    "split_subjects": "split",
    "read_table": "tables",
    "write_table": "tables",
    "packing_rows": "visit_packing",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
