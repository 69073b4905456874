"""hamnet-jax: HAMNet (hierarchical attention multimodal network for biological age) in
JAX/Flax, with the optimization framework around it.

Names are re-exported lazily (PEP 562): `import hamnet_jax` loads no JAX, so the `hamnet`
command starts fast; `hamnet_jax.fit` imports its module on first use.
"""

from __future__ import annotations

from hamnet_jax.lazy_exports import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Batch": "hamnet_jax.data.batch",
    "create_comprehensive_optimizer": "hamnet_jax.optimization.pipeline",
    "optimize_hamnet_pipeline": "hamnet_jax.optimization.pipeline",
    "run_pipeline": "hamnet_jax.pipeline",
    "CohortArrays": "hamnet_jax.data.arrays",
    "CohortDims": "hamnet_jax.cohort.default",
    "CompressedModel": "hamnet_jax.inference.compressed",
    "Config": "hamnet_jax.config",
    "DEFAULT_SUBJECTS": "hamnet_jax.cohort.default",
    "DataConfig": "hamnet_jax.config",
    "DistillationConfig": "hamnet_jax.config",
    "DistillationMethod": "hamnet_jax.config",
    "DistillationResult": "hamnet_jax.compression.distillation",
    "FitOptions": "hamnet_jax.training.fit_options",
    "FitResult": "hamnet_jax.training.loop",
    "HAMNet": "hamnet_jax.models.hamnet",
    "HAMNetConfig": "hamnet_jax.models.config",
    "HAMNetInferenceOptimizer": "hamnet_jax.optimization.inference_optimization",
    "HAMNetKnowledgeDistillation": "hamnet_jax.optimization.knowledge_distillation",
    "HAMNetOptimizer": "hamnet_jax.optimization.pruning_quantization",
    "HAMNetRegularizer": "hamnet_jax.optimization.regularization",
    "HAMNetTrainingOptimizer": "hamnet_jax.optimization.training_optimization",
    "InferenceBackend": "hamnet_jax.optimization.inference_optimization",
    "InferenceOptimizationConfig": "hamnet_jax.optimization.inference_optimization",
    "InputError": "hamnet_jax.errors",
    "JaxPredictor": "hamnet_jax.inference.predictors",
    "OnnxPredictor": "hamnet_jax.inference.predictors",
    "MODALITIES": "hamnet_jax.modalities",
    "OptimizationResult": "hamnet_jax.compression.optimize",
    "OptimizationStrategy": "hamnet_jax.config",
    "OptimizerConfig": "hamnet_jax.training.state",
    "Plan": "hamnet_jax.training.plan",
    "PrecisionMode": "hamnet_jax.config",
    "Preprocessor": "hamnet_jax.data.preprocess",
    "PruningConfig": "hamnet_jax.config",
    "PruningMethod": "hamnet_jax.config",
    "QuantizationConfig": "hamnet_jax.config",
    "QuantizationMode": "hamnet_jax.config",
    "RegularizationConfig": "hamnet_jax.optimization.regularization",
    "RegularizationType": "hamnet_jax.optimization.regularization",
    "RawModel": "hamnet_jax.inference.raw_model",
    "Run": "hamnet_jax.runs.run_dir",
    "Schema": "hamnet_jax.data.schema",
    "TrainState": "hamnet_jax.training.state",
    "TrainingConfig": "hamnet_jax.config",
    "TrainingOptimizationConfig": "hamnet_jax.optimization.training_optimization",
    "build_predictor": "hamnet_jax.inference.factory",
    "compress_run": "hamnet_jax.runs.compress",
    "create_train_state": "hamnet_jax.training.state",
    "distill_run": "hamnet_jax.runs.distill",
    "distill_step": "hamnet_jax.training.distill_step",
    "eval_step": "hamnet_jax.training.steps",
    "export_run_onnx": "hamnet_jax.export.onnx_export",
    "fit": "hamnet_jax.training.loop",
    "frame_to_arrays": "hamnet_jax.data.arrays",
    "generate_cohort": "hamnet_jax.cohort.default",
    "init_params": "hamnet_jax.models.hamnet",
    "initialize_distributed": "hamnet_jax.training.distributed",
    "load_cohort": "hamnet_jax.data.dataset",
    "load_config": "hamnet_jax.config",
    "load_run": "hamnet_jax.runs.run_dir",
    "make_mesh": "hamnet_jax.training.sharding",
    "predict_with_uncertainty": "hamnet_jax.models.uncertainty",
    "random_batch": "hamnet_jax.data.batch",
    "random_raw": "hamnet_jax.inference.raw_inputs",
    "regularized_step": "hamnet_jax.training.regularized_step",
    "resolve_policy": "hamnet_jax.training.precision",
    "split_cohort": "hamnet_jax.data.dataset",
    "split_subjects": "hamnet_jax.data.split",
    "train_run": "hamnet_jax.runs.train",
    "train_step": "hamnet_jax.training.steps",
    "train_step_fn": "hamnet_jax.training.steps",
    "validate_batch": "hamnet_jax.data.batch",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
