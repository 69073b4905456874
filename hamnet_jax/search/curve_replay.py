"""A scheduler replayed on recorded learning curves: which trials it would have promoted,
what it would have spent and found, without training anything.

    curves = {trial: [loss after epoch 1, after epoch 2, ...], ...}   # e.g. a full-budget study's
    replay_scheduler(SuccessiveHalving(1, 9, 9, eta=3), curves)

A promoted trial resumes from its checkpoint and its learning-rate schedule spans the full
budget (`schedule_epochs`), so it trains as its full-budget twin did: the losses a
scheduler would see are the twin's curve, up to float differences after a resume (at most
2.5e-4 in val MAE over experiments/bench_search.py's 135 trials, enough to flip a near-tie at
a rung's cut). That makes schedulers
comparable on the same trials, over many seeds, at the cost of one full-budget study each
(experiments/bench_search.py measures them this way, then runs the one it keeps for real).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hamnet_jax.errors import InputError


def _losses(value: float | Sequence[float]) -> tuple[float, ...]:
    return tuple(float(x) for x in value) if isinstance(value, Sequence) else (float(value),)


def replay_scheduler(scheduler: Any, curves: Mapping[int, Sequence[float | Sequence[float]]]) -> dict[str, Any]:
    """Drive `scheduler` (ASHA, SuccessiveHalving, Hyperband, FullBudget, ...) one job at a
    time with `curves[trial][budget - 1]` as each job's losses (trials numbered from 0, as the
    engine numbers them). Returns the jobs in order, the trial-epochs spent (a promoted
    trial pays only the epochs past its last budget), each trial's largest budget and its
    losses there, and the best trial among those that reached the largest budget any
    trial reached (by the first loss)."""
    reached: dict[int, int] = {}
    jobs: list[tuple[int, int]] = []
    spent, new_trial = 0, 0
    while (job := scheduler.next_job(new_trial)) is not None:
        if job.new:
            new_trial += 1
        curve = curves.get(job.trial)
        if curve is None:
            raise InputError(f"replay: the scheduler asked for trial {job.trial}; the curves hold trials "
                             f"{sorted(curves)}")
        if not 1 <= job.budget <= len(curve):
            raise InputError(f"replay: trial {job.trial} at budget {job.budget}, but its curve has "
                             f"{len(curve)} epochs")
        spent += job.budget - reached.get(job.trial, 0)
        reached[job.trial] = job.budget
        jobs.append((job.trial, job.budget))
        scheduler.report(job, _losses(curve[job.budget - 1]))
    if not scheduler.done:
        raise InputError("replay: the scheduler stopped handing out jobs before it was done")
    top = max(reached.values(), default=0)
    final = {t: _losses(curves[t][b - 1]) for t, b in reached.items() if b == top}
    best = min(final, key=lambda t: (final[t][0], t)) if final else None
    return {"jobs": jobs, "trial_epochs": spent, "budgets": reached, "full_budget": top, "final": final,
            "best_trial": best, "best_loss": final[best][0] if final else None}
