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
from hamnet_jax.run_dir import Run, load_run
from hamnet_jax.training.loop import FitResult, fit
from hamnet_jax.training.state import OptimizerConfig, TrainState, create_train_state
from hamnet_jax.training.steps import eval_step, train_step
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
    "FitResult",
    "HAMNet",
    "HAMNetConfig",
    "InputError",
    "OptimizerConfig",
    "Preprocessor",
    "Run",
    "Schema",
    "TrainState",
    "TrainingConfig",
    "create_train_state",
    "eval_step",
    "fit",
    "frame_to_arrays",
    "generate_cohort",
    "init_params",
    "load_cohort",
    "load_config",
    "load_run",
    "predict_with_uncertainty",
    "random_batch",
    "split_cohort",
    "split_subjects",
    "train_run",
    "train_step",
    "validate_batch",
]
