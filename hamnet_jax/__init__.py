"""hamnet-jax: HAMNet (hierarchical attention multimodal network for biological age) in
JAX/Flax, with the optimization framework around it."""

from hamnet_jax.config import Config, DataConfig, TrainingConfig, load_config
from hamnet_jax.data.arrays import CohortArrays, frame_to_arrays
from hamnet_jax.data.batch import Batch, random_batch, validate_batch
from hamnet_jax.data.cohort import DEFAULT_SUBJECTS, CohortDims, generate_cohort
from hamnet_jax.data.dataset import load_cohort, split_cohort
from hamnet_jax.data.preprocess import Preprocessor
from hamnet_jax.data.schema import Schema
from hamnet_jax.data.split import split_subjects
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import MODALITIES, HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, init_params
from hamnet_jax.models.uncertainty import predict_with_uncertainty
from hamnet_jax.compression.configs import PruningConfig, PruningMethod, QuantizationConfig, QuantizationMode
from hamnet_jax.compression.run import compress_run
from hamnet_jax.compression.distill_run import distill_run
from hamnet_jax.optimization.knowledge_distillation import (DistillationConfig, DistillationMethod,
                                                            DistillationResult, HAMNetKnowledgeDistillation)
from hamnet_jax.optimization.pruning_quantization import HAMNetOptimizer, OptimizationResult
from hamnet_jax.optimization.regularization import HAMNetRegularizer, RegularizationConfig, RegularizationType
from hamnet_jax.optimization.training_optimization import HAMNetTrainingOptimizer, TrainingOptimizationConfig
from hamnet_jax.run_dir import Run, load_run
from hamnet_jax.training.distill_step import distill_step
from hamnet_jax.training.distributed import initialize_distributed
from hamnet_jax.training.regularized_step import regularized_step
from hamnet_jax.training.loop import FitResult, fit
from hamnet_jax.training.precision import PrecisionMode, resolve_policy
from hamnet_jax.training.sharding import make_mesh
from hamnet_jax.training.state import OptimizerConfig, TrainState, create_train_state
from hamnet_jax.training.steps import eval_step, train_step, train_step_fn
from hamnet_jax.training.strategies import OptimizationStrategy
from hamnet_jax.training.train_run import train_run

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SUBJECTS",
    "MODALITIES",
    "Batch",
    "CohortArrays",
    "CohortDims",
    "Config",
    "DataConfig",
    "DistillationConfig",
    "DistillationMethod",
    "DistillationResult",
    "FitResult",
    "HAMNet",
    "HAMNetConfig",
    "HAMNetKnowledgeDistillation",
    "HAMNetOptimizer",
    "HAMNetRegularizer",
    "HAMNetTrainingOptimizer",
    "OptimizationResult",
    "PruningConfig",
    "PruningMethod",
    "QuantizationConfig",
    "QuantizationMode",
    "compress_run",
    "InputError",
    "OptimizationStrategy",
    "OptimizerConfig",
    "PrecisionMode",
    "Preprocessor",
    "RegularizationConfig",
    "RegularizationType",
    "Run",
    "Schema",
    "TrainState",
    "TrainingConfig",
    "TrainingOptimizationConfig",
    "create_train_state",
    "distill_run",
    "distill_step",
    "eval_step",
    "fit",
    "frame_to_arrays",
    "generate_cohort",
    "init_params",
    "initialize_distributed",
    "load_cohort",
    "load_config",
    "load_run",
    "make_mesh",
    "predict_with_uncertainty",
    "random_batch",
    "regularized_step",
    "resolve_policy",
    "split_cohort",
    "split_subjects",
    "train_run",
    "train_step",
    "train_step_fn",
    "validate_batch",
]
