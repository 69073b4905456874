"""Studies: typed search spaces, proposers (nevergrad), schedulers (ASHA, Hyperband), the
crash-safe store and engine, executors, analysis."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "analyze_study": "analysis",
    "Objective": "engine",
    "function_study": "engine",
    "run_study": "engine",
    "ProcessExecutor": "executors",
    "RayExecutor": "executors",
    "SerialExecutor": "executors",
    "fronts": "pareto",
    "select_best": "pareto",
    "Proposer": "proposers",
    "ASHA": "schedulers",
    "FullBudget": "schedulers",
    "Hyperband": "schedulers",
    "Bool": "space",
    "Choice": "space",
    "Float": "space",
    "Int": "space",
    "SearchSpace": "space",
    "architecture_space": "spaces",
    "training_space": "spaces",
    "open_study": "store",
    "StudyRequest": "study",
    "run_search": "study",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
