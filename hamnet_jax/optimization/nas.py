"""`HAMNetNAS`: the original framework's architecture-search facade.

    from hamnet_jax.optimization.nas import ArchitectureConfig, HAMNetNAS, SearchStrategy

    nas = HAMNetNAS(ArchitectureConfig(search_strategy=SearchStrategy.EVOLUTIONARY, max_layers=4, min_layers=1,
                                       population_size=8, generations=4, mutation_rate=0.1, crossover_rate=0.8))
    best = nas.search(fitness_fn, max_iterations=30)   # fitness_fn(architecture) -> float, higher is better
    best.to_model_config(clinical_dim=96, ...)            # a HAMNetConfig
    nas.analyze_search_results()["best_fitness"]

Thin: the space is `search.spaces.architecture_space(min_layers, max_layers)` (or
`space=`), the proposer nevergrad's (search/proposers.py), the study the search engine's
(kept in `study_dir` when given: a later `search` there resumes it). For multi-fidelity,
multi-objective studies on real training, use `hamnet search nas`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hamnet_jax.config import section_from_keywords
from hamnet_jax.config.sections import NASSection
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.search.analysis import parameter_importance
from hamnet_jax.search.engine import Objective, function_study
from hamnet_jax.search.proposers import Proposer
from hamnet_jax.search.schedulers import FullBudget
from hamnet_jax.search.space import SearchSpace
from hamnet_jax.search.spaces import architecture_space

__all__ = ["Architecture", "ArchitectureConfig", "HAMNetNAS", "SearchStrategy"]


class SearchStrategy(enum.StrEnum):
    EVOLUTIONARY = "evolutionary"
    RANDOM = "random"
    BAYESIAN = "bayesian"
    DIFFERENTIABLE = "differentiable"
    REINFORCEMENT = "reinforcement"


def ArchitectureConfig(**keys: Any) -> NASSection:  # noqa: N802 - the original framework's name
    """The `nas:` section from keyword arguments (enums or their values), checked."""
    return section_from_keywords("nas", keys, "ArchitectureConfig")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One point of the architecture space: `model:` keys."""

    values: dict[str, Any]

    def to_model_config(self, tier: str = "standard", **data_fields: Any) -> HAMNetConfig:
        """The HAMNetConfig of this architecture; `data_fields` are the data's widths
        (clinical_dim, ..., lifestyle_cardinalities)."""
        return HAMNetConfig.from_tier(tier, **{**self.values, **data_fields})


class HAMNetNAS:
    def __init__(self, config: NASSection | None = None, space: SearchSpace | None = None,
                 study_dir: str | Path | None = None, seed: int = 0) -> None:
        self.config = config or NASSection()
        if self.config.search_strategy in ("differentiable", "reinforcement"):
            raise InputError(f"nas.search_strategy {self.config.search_strategy!r} is not implemented; use "
                             "evolutionary, random or bayesian")
        self.space = space or architecture_space(self.config.min_layers, self.config.max_layers)
        self.study_dir, self.seed = study_dir, seed
        self.records: dict[int, Any] = {}

    def search(self, fitness_fn: Callable[[Architecture], float], max_iterations: int | None = None) -> Architecture:
        """Evaluate up to `max_iterations` architectures (default population_size x
        generations); the fittest one."""
        budget = int(max_iterations or self.config.population_size * self.config.generations)
        proposer = Proposer(self.space, self.config.search_strategy, budget, self.seed, self.config.population_size,
                            self.config.mutation_rate, self.config.crossover_rate)
        identity = {"facade": "HAMNetNAS", "space": self.space.describe(), "config": dataclasses.asdict(self.config),
                    "iterations": budget, "seed": self.seed}
        self.records = function_study(self.space, Objective("fitness", "max"), FullBudget(1, budget), proposer,
                                      lambda point, _budget: {"fitness": float(fitness_fn(Architecture(point)))},
                                      self.study_dir, identity)
        return Architecture(self._best().config)

    def _best(self) -> Any:
        scored = [r for r in self.records.values() if r.results and r.status == "done"]
        if not scored:
            raise InputError("HAMNetNAS: no architecture was evaluated successfully (call search first)")
        return max(scored, key=lambda r: r.results[-1]["metrics"]["fitness"])

    def analyze_search_results(self) -> dict[str, Any]:
        best = self._best()
        history = [r.results[-1]["metrics"]["fitness"] if r.results else None
                   for _, r in sorted(self.records.items())]
        running, best_so_far = float("-inf"), []
        for value in history:
            running = max(running, value) if value is not None else running
            best_so_far.append(running)
        failed = sum(r.status == "failed" for r in self.records.values())
        return {"best_fitness": best.results[-1]["metrics"]["fitness"], "best_architecture": best.config,
                "num_evaluations": len(self.records), "failed": failed, "fitness_history": history,
                "best_so_far": best_so_far, "parameter_importance": parameter_importance(self.records)}
