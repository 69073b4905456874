"""The original framework's classes, one module per original module name, and its two
headline entry points (`hamnet_jax.optimization.pipeline`), imported on first use:

    from hamnet_jax.optimization import create_comprehensive_optimizer, optimize_hamnet_pipeline
    from hamnet_jax.optimization import HAMNetNAS          # or hamnet_jax.optimization.nas, as before
"""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "BenchmarkConfig": "benchmarking",
    "BenchmarkType": "benchmarking",
    "HAMNetBenchmarkSuite": "benchmarking",
    "DeploymentConfig": "deployment",
    "DeploymentEnvironment": "deployment",
    "DeploymentMode": "deployment",
    "HAMNetDeploymentManager": "deployment",
    "HAMNetHyperparameterOptimizer": "hyperparameter_optimization",
    "HyperparameterConfig": "hyperparameter_optimization",
    "HAMNetInferenceOptimizer": "inference_optimization",
    "InferenceBackend": "inference_optimization",
    "InferenceOptimizationConfig": "inference_optimization",
    "DistillationConfig": "knowledge_distillation",
    "DistillationMethod": "knowledge_distillation",
    "HAMNetKnowledgeDistillation": "knowledge_distillation",
    "ABTestType": "monitoring",
    "HAMNetMonitoring": "monitoring",
    "MonitoringConfig": "monitoring",
    "ArchitectureConfig": "nas",
    "HAMNetNAS": "nas",
    "SearchStrategy": "nas",
    "create_comprehensive_optimizer": "pipeline",
    "optimize_hamnet_pipeline": "pipeline",
    "HAMNetOptimizer": "pruning_quantization",
    "HAMNetRegularizer": "regularization",
    "RegularizationConfig": "regularization",
    "RegularizationType": "regularization",
    "HAMNetTrainingOptimizer": "training_optimization",
    "OptimizationStrategy": "training_optimization",
    "PrecisionMode": "training_optimization",
    "TrainingOptimizationConfig": "training_optimization",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
