"""Proposers: where a study's next configuration comes from, chosen by the original names.

| strategy       | nevergrad optimizer                                                        |
|----------------|----------------------------------------------------------------------------|
| `random`       | `RandomSearch`                                                             |
| `grid`         | none: every point of `SearchSpace.grid()` once, in order                   |
| `evolutionary` | `EvolutionStrategy(popsize=population_size, recombination_ratio=crossover_rate)`; |
|                | each linear numeric parameter mutates by `mutation_rate` x its range       |
| `differential` | `DifferentialEvolution(popsize=population_size, crossover=crossover_rate)` |
| `bayesian`     | `BO` (Gaussian-process Bayesian optimization)                              |
| `cma`          | `CMA` (CMA-ES)                                                             |
| `ngopt`        | `NGOpt` (nevergrad's own choice for the space and budget)                  |

Several objectives are told as a list of losses: nevergrad then optimizes the hypervolume
and keeps its Pareto front. A proposer's state is never stored: a resumed study rebuilds
it by replaying its asks and tells from the event log (search/engine.py), so nothing in a
study directory can run code when loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hamnet_jax.errors import InputError
from hamnet_jax.search.space import Float, Int, SearchSpace

STRATEGIES = ("random", "grid", "evolutionary", "differential", "bayesian", "cma", "ngopt")
_NEVERGRAD = {"random": "RandomSearch", "bayesian": "BO", "cma": "CMA", "ngopt": "NGOpt"}


class Proposer:
    """`ask() -> (raw value, decoded config)` or None when exhausted; `tell(raw, losses)`."""

    def __init__(self, space: SearchSpace, strategy: str, budget: int, seed: int = 0, population_size: int = 30,
                 mutation_rate: float = 0.1, crossover_rate: float = 0.5) -> None:
        if strategy not in STRATEGIES:
            raise InputError(f"search strategy {strategy!r} is unknown; expected one of {list(STRATEGIES)}")
        self.space, self.strategy = space, strategy
        self.optimizer: Any = None
        self._grid: list[dict[str, Any]] = []
        self.position = 0
        self.asked = 0  # points proposed so far (a resumed study checks it against its records)
        if strategy == "grid":
            self._grid = space.grid()
            return
        import nevergrad as ng

        parametrization = space.parametrization(seed)
        if strategy == "evolutionary":
            for name, p in space.params.items():
                if isinstance(p, (Float, Int)) and not p.log and p.high > p.low:
                    parametrization[name].set_mutation(sigma=mutation_rate * (p.high - p.low))
            family = ng.families.EvolutionStrategy(popsize=population_size, recombination_ratio=crossover_rate)
            self.optimizer = family(parametrization, budget=budget)
        elif strategy == "differential":
            family = ng.families.DifferentialEvolution(popsize=population_size, crossover=crossover_rate)
            self.optimizer = family(parametrization, budget=budget)
        else:
            self.optimizer = ng.optimizers.registry[_NEVERGRAD[strategy]](parametrization, budget=budget)

    def ask(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        if self.strategy == "grid":
            if self.position >= len(self._grid):
                return None
            point = self._grid[self.position]
            self.position += 1
            self.asked += 1
            return dict(point), dict(point)
        candidate = self.optimizer.ask()
        raw = {k: _plain(v) for k, v in candidate.value.items()}
        self.asked += 1
        return raw, self.space.decode(raw)

    def tell(self, raw: dict[str, Any], losses: Sequence[float]) -> None:
        if self.optimizer is None:
            return
        candidate = self.optimizer.parametrization.spawn_child(new_value=raw)
        self.optimizer.tell(candidate, losses[0] if len(losses) == 1 else list(losses))

    @property
    def size(self) -> int | None:
        """The number of points a grid holds (None: unbounded)."""
        return len(self._grid) if self.strategy == "grid" else None


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
