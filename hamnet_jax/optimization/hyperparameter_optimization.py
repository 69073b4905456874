"""`HAMNetHyperparameterOptimizer`: the original framework's hyperparameter-search facade.

    from hamnet_jax.optimization.hyperparameter_optimization import (
        HAMNetHyperparameterOptimizer, HyperparameterConfig, OptimizationStrategy)

    hyperopt = HAMNetHyperparameterOptimizer(HyperparameterConfig(strategy=OptimizationStrategy.BAYESIAN,
                                                                   max_trials=40, max_epochs_per_trial=20))
    best_trial = hyperopt.optimize(train_fn)       # train_fn(model, hyperparameters) -> {"val_loss": ...}
    hyperopt.get_best_hyperparameters()            # {"learning_rate": ..., "batch_size": ..., ...}

`train_fn` gets the optimizer's `model` (what the caller passed, e.g. a HAMNetConfig) and a
point of the training space (`search.spaces.training_space()`, or `space=`) with
`num_epochs` set to the trial's budget: `max_epochs_per_trial`, or with the `hyperband` /
`asha` strategies the scheduler's rung (random proposals), so the function trains that long.
The metric minimized is `metric` (default `val_loss`; `direction="max"` to maximize).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hamnet_jax.config import section_from_keywords
from hamnet_jax.config.sections import HyperparameterSection
from hamnet_jax.errors import InputError
from hamnet_jax.search.engine import Objective, function_study
from hamnet_jax.search.proposers import Proposer
from hamnet_jax.search.schedulers import ASHA, FullBudget, Hyperband
from hamnet_jax.search.space import SearchSpace
from hamnet_jax.search.spaces import training_space

__all__ = ["HAMNetHyperparameterOptimizer", "HyperparameterConfig", "OptimizationStrategy"]


class OptimizationStrategy(enum.StrEnum):
    BAYESIAN = "bayesian"
    RANDOM = "random"
    GRID = "grid"
    EVOLUTIONARY = "evolutionary"
    HYPERBAND = "hyperband"
    ASHA = "asha"


def HyperparameterConfig(**keys: Any) -> HyperparameterSection:  # noqa: N802 - the original framework's name
    """The `hyperparameter_optimization:` section from keyword arguments, checked."""
    return section_from_keywords("hyperparameter_optimization", keys, "HyperparameterConfig")


class HAMNetHyperparameterOptimizer:
    def __init__(self, config: HyperparameterSection | None = None, model: Any = None,
                 space: SearchSpace | None = None, metric: str = "val_loss", direction: str = "min",
                 study_dir: str | Path | None = None, seed: int = 0, min_epochs: int = 1, eta: int = 3) -> None:
        self.config = config or HyperparameterSection()
        self.model, self.space = model, space or training_space()
        self.objective = Objective(metric, direction)
        self.study_dir, self.seed, self.min_epochs, self.eta = study_dir, seed, min_epochs, eta
        self.records: dict[int, Any] = {}

    def _scheduler(self) -> tuple[str, Any]:
        c = self.config
        if c.strategy == "hyperband":
            return "random", Hyperband(self.min_epochs, c.max_epochs_per_trial, self.eta)
        if c.strategy == "asha":
            return "random", ASHA(self.min_epochs, c.max_epochs_per_trial, c.max_trials, self.eta)
        return c.strategy, FullBudget(c.max_epochs_per_trial, c.max_trials)

    def optimize(self, train_fn: Callable[[Any, dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        strategy, scheduler = self._scheduler()
        trials = getattr(scheduler, "max_trials", None) or scheduler.trials_planned
        proposer = Proposer(self.space, strategy, trials, self.seed)
        if proposer.size is not None and trials > proposer.size:
            raise InputError(f"max_trials {trials}: the grid holds {proposer.size} points")
        identity = {"facade": "HAMNetHyperparameterOptimizer", "space": self.space.describe(),
                    "config": dataclasses.asdict(self.config), "metric": self.objective.metric,
                    "direction": self.objective.direction, "seed": self.seed}
        self.records = function_study(self.space, self.objective, scheduler, proposer,
                                      lambda point, budget: train_fn(self.model, {**point, "num_epochs": budget}),
                                      self.study_dir, identity)
        return self.best_trial()

    def best_trial(self) -> dict[str, Any]:
        """The best trial at its largest budget: trial id, hyperparameters, metrics."""
        done = [r for r in self.records.values() if r.results and r.status == "done"]
        if not done:
            raise InputError("HAMNetHyperparameterOptimizer: no trial finished (call optimize first)")
        top = max(r.results[-1]["budget"] for r in done)
        best = min((r for r in done if r.results[-1]["budget"] == top), key=lambda r: r.results[-1]["losses"][0])
        return {"trial": best.trial, "hyperparameters": dict(best.config), "metrics": best.results[-1]["metrics"],
                "budget": top}

    def get_best_hyperparameters(self) -> dict[str, Any]:
        return self.best_trial()["hyperparameters"]
