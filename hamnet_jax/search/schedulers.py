"""Multi-fidelity schedulers: how much each trial trains, for one or several objectives.

A scheduler hands out `Job`s (a trial, a budget in epochs) and is told each job's losses
(one per objective, lower is better). Promotion ranks a rung's trials by non-dominated
sorting and crowding distance (search/pareto.py), so the schedulers work on
multi-objective studies, where Optuna's pruners and Ray Tune's schedulers take a single
metric. A promoted trial continues from its checkpoint at the lower budget (the engine
passes the trial's run directory back).

* `ASHA`       asynchronous successive halving (Li et al. 2020, "A System for Massively
               Parallel Hyperparameter Tuning"): rungs min_budget * eta^k; a free worker
               promotes a trial that is in the best 1/eta of its rung, else starts a new one.
* `SuccessiveHalving`  synchronous successive halving (Jamieson & Talwalkar 2016; Karnin
               et al. 2013): `max_trials` trials at the smallest budget, then rung by rung
               the best 1/eta, ranked once the whole rung has reported, so the promotions
               do not depend on which trial finishes first (ASHA's do).
* `Hyperband`  (Li et al. 2018): brackets of synchronous successive halving, from many
               trials at a small budget to few at the full budget.
* `FullBudget` every trial at max_budget (plain random / Bayesian / grid search).

The rungs are min_budget * eta^k up to max_budget unless `rungs` names them: a rung is
only as good as its ranking, and where the learning rate peaks (the epochs after warm-up)
the ranking can be noisier than a few epochs later. experiments/bench_search.py measures how
well each epoch ranks the configurations (Spearman's rho) and which plan keeps the best;
`hamnet search --rungs 1,4,9` places them there.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from hamnet_jax.errors import InputError
from hamnet_jax.search.pareto import select_best


@dataclasses.dataclass(frozen=True)
class Job:
    trial: int
    budget: int
    rung: int
    new: bool  # the trial needs a configuration from the proposer


def _check_budgets(min_budget: int, max_budget: int, eta: int) -> None:
    if min_budget < 1 or max_budget < min_budget:
        raise InputError(f"budgets: need 1 <= min_budget <= max_budget, got {min_budget}, {max_budget}")
    if eta < 2:
        raise InputError(f"eta: the reduction factor must be at least 2, got {eta}")


def rung_budgets(min_budget: int, max_budget: int, eta: int) -> list[int]:
    _check_budgets(min_budget, max_budget, eta)
    out, b = [], float(min_budget)
    while round(b) < max_budget:
        out.append(int(round(b)))
        b *= eta
    return out + [max_budget]


def rung_plan(min_budget: int, max_budget: int, eta: int, rungs: Sequence[int] | None = None) -> list[int]:
    """The rungs' budgets: geometric (`rung_budgets`), or `rungs` as given: strictly
    increasing whole epochs from min_budget to max_budget."""
    if rungs is None:
        return rung_budgets(min_budget, max_budget, eta)
    _check_budgets(min_budget, max_budget, eta)
    plan = list(rungs)
    if not plan or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in plan):
        raise InputError(f"rungs {plan}: expected whole epochs >= 1")
    if any(later <= earlier for earlier, later in zip(plan, plan[1:], strict=False)):
        raise InputError(f"rungs {plan}: each budget must be larger than the one before")
    if plan[0] != min_budget or plan[-1] != max_budget:
        raise InputError(f"rungs {plan}: the first must be the smallest budget ({min_budget}) and the last the full "
                         f"budget ({max_budget})")
    return plan


class FullBudget:
    """Every trial trains `max_budget` epochs; `max_trials` trials."""

    def __init__(self, max_budget: int, max_trials: int) -> None:
        self.budget, self.max_trials, self.started = max_budget, max_trials, 0

    def next_job(self, new_trial: int) -> Job | None:
        if self.started >= self.max_trials:
            return None
        self.started += 1
        return Job(new_trial, self.budget, 0, True)

    def report(self, job: Job, losses: Sequence[float]) -> None:
        pass

    @property
    def done(self) -> bool:
        return self.started >= self.max_trials


class ASHA:
    """`max_trials` new trials; afterwards only promotions, until none is left."""

    def __init__(self, min_budget: int, max_budget: int, max_trials: int, eta: int = 3,
                 rungs: Sequence[int] | None = None) -> None:
        self.rungs = rung_plan(min_budget, max_budget, eta, rungs)
        self.eta, self.max_trials, self.started = eta, max_trials, 0
        self.results: list[dict[int, tuple[float, ...]]] = [{} for _ in self.rungs]
        self.promoted: list[set[int]] = [set() for _ in self.rungs]

    def _promotable(self, rung: int) -> list[int]:
        done = self.results[rung]
        top = len(done) // self.eta
        if top == 0:
            return []
        ids = list(done)
        return [ids[i] for i in select_best([done[t] for t in ids], top) if ids[i] not in self.promoted[rung]]

    def next_job(self, new_trial: int) -> Job | None:
        for rung in reversed(range(len(self.rungs) - 1)):
            candidates = self._promotable(rung)
            if candidates:
                self.promoted[rung].add(candidates[0])
                return Job(candidates[0], self.rungs[rung + 1], rung + 1, False)
        if self.started < self.max_trials:
            self.started += 1
            return Job(new_trial, self.rungs[0], 0, True)
        return None

    def report(self, job: Job, losses: Sequence[float]) -> None:
        self.results[job.rung][job.trial] = tuple(float(x) for x in losses)

    @property
    def done(self) -> bool:
        return self.started >= self.max_trials and not any(self._promotable(r) for r in range(len(self.rungs) - 1))


def _rung_winners(results: dict[int, tuple[float, ...]], keep: int) -> list[int]:
    """The best `keep` trials of a finished rung, ranked in trial order (ties go to the
    lower trial id, whatever order the results arrived in)."""
    ids = sorted(results)
    return [ids[i] for i in select_best([results[t] for t in ids], keep)]


class SuccessiveHalving:
    """`max_trials` trials at rung `first_rung`; each finished rung promotes its best 1/eta
    to the next, until the full budget (`at_least_one`: a rung smaller than eta still
    promotes its best; else the halving ends there, as a Hyperband bracket does)."""

    def __init__(self, min_budget: int, max_budget: int, max_trials: int, eta: int = 3, first_rung: int = 0,
                 at_least_one: bool = True, rungs: Sequence[int] | None = None) -> None:
        if max_trials < 1:
            raise InputError(f"successive halving: max_trials must be at least 1, got {max_trials}")
        self.rungs = rung_plan(min_budget, max_budget, eta, rungs)
        self.eta, self.rung, self.at_least_one = eta, first_rung, at_least_one
        self.pending: list[int | None] = [None] * max_trials  # None: a new trial
        self.waiting = 0
        self.results: dict[int, tuple[float, ...]] = {}

    def next_job(self, new_trial: int) -> Job | None:
        if not self.pending:
            return None
        trial = self.pending.pop(0)
        self.waiting += 1
        return Job(new_trial if trial is None else trial, self.rungs[self.rung], self.rung, trial is None)

    def report(self, job: Job, losses: Sequence[float]) -> None:
        self.results[job.trial] = tuple(float(x) for x in losses)
        self.waiting -= 1
        keep = len(self.results) // self.eta
        if self.pending or self.waiting or self.rung + 1 >= len(self.rungs) or not (keep or self.at_least_one):
            return
        self.pending = _rung_winners(self.results, max(keep, 1))
        self.rung, self.results = self.rung + 1, {}

    @property
    def done(self) -> bool:
        return not self.pending and not self.waiting


class Hyperband:
    """Brackets s = s_max..0: n_s trials at max_budget * eta^-s, the best 1/eta promoted
    rung by rung (each bracket a `SuccessiveHalving`: a rung is ranked once all its jobs
    have reported)."""

    def __init__(self, min_budget: int, max_budget: int, eta: int = 3, brackets: int | None = None,
                 rungs: Sequence[int] | None = None) -> None:
        if brackets is not None and brackets < 1:
            raise InputError(f"hyperband: brackets must be at least 1, got {brackets}")
        self.budgets, self.rungs = (min_budget, max_budget, eta), rung_plan(min_budget, max_budget, eta, rungs)
        s_max = len(self.rungs) - 1
        self.plan = []  # (first rung, trials) per bracket
        for s in range(s_max, -1, -1)[:brackets]:
            self.plan.append((s_max - s, int(math.ceil((s_max + 1) / (s + 1) * eta ** s))))
        self.bracket = 0
        self.current = self._halving(0)

    def _halving(self, bracket: int) -> SuccessiveHalving:
        rung, n = self.plan[bracket]
        return SuccessiveHalving(*self.budgets[:2], n, self.budgets[2], first_rung=rung, at_least_one=False,
                                 rungs=self.rungs)

    @property
    def trials_planned(self) -> int:
        return sum(n for _, n in self.plan)

    def next_job(self, new_trial: int) -> Job | None:
        if self.current.done and self.bracket + 1 < len(self.plan):
            self.bracket += 1
            self.current = self._halving(self.bracket)
        return self.current.next_job(new_trial)

    def report(self, job: Job, losses: Sequence[float]) -> None:
        self.current.report(job, losses)

    @property
    def done(self) -> bool:
        return self.bracket + 1 >= len(self.plan) and self.current.done
