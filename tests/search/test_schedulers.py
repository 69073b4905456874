"""Multi-fidelity schedulers: rung plans (geometric or named), synchronous and asynchronous
promotion, Hyperband's brackets, and their replay on recorded learning curves."""

from __future__ import annotations

import pytest

pytest.importorskip("nevergrad")

from hamnet_jax.errors import InputError  # noqa: E402
from hamnet_jax.search.curve_replay import replay_scheduler  # noqa: E402
from hamnet_jax.search.engine import Objective, run_study  # noqa: E402
from hamnet_jax.search.pareto import fronts  # noqa: E402
from hamnet_jax.search.proposers import Proposer  # noqa: E402
from hamnet_jax.search.schedulers import ASHA, FullBudget, Hyperband, SuccessiveHalving, rung_budgets  # noqa: E402
from hamnet_jax.search.space import Int, SearchSpace  # noqa: E402
from hamnet_jax.search.store import open_study  # noqa: E402

# 27 configurations, three of them non-dominated at every budget: (0,2), (1,1), (2,0)
FRONT_TABLE = [(0.0, 2.0), (1.0, 1.0), (2.0, 0.0)] + [
    (x % 3 + 1.0, 3.0 - x % 3 + 0.1 * (x // 3)) for x in range(3, 27)]


def test_multi_objective_asha_keeps_the_non_dominated_trials(tmp_path):
    space = SearchSpace({"x": Int(0, 26)})

    def trial(config, budget, run_dir, trial):
        f1, f2 = FRONT_TABLE[config["x"]]
        return {"f1": f1 + 1.0 / budget, "f2": f2 + 1.0 / budget}

    store = open_study(tmp_path / "asha", {"kind": "asha"}, resume=False)
    scheduler = ASHA(1, 9, max_trials=27, eta=3)
    records = run_study(store, space, [Objective("f1"), Objective("f2")], scheduler,
                        Proposer(space, "grid", budget=27), trial)
    at_max = {r.config["x"] for r in records.values() if any(res["budget"] == 9 for res in r.results)}
    front = {i for i in fronts(FRONT_TABLE)[0]}
    assert front == {0, 1, 2} and at_max == front
    assert rung_budgets(1, 9, 3) == [1, 3, 9]


def _halving_jobs(scheduler, losses: dict[int, float], order) -> list[tuple[int, int]]:
    """Drive `scheduler` to its end, reporting each rung's jobs in `order(jobs)`; the
    (trial, budget) of every job handed out."""
    handed, new = [], 0
    while not scheduler.done:
        jobs = []
        while (job := scheduler.next_job(new)) is not None:
            new += job.new
            jobs.append(job)
        handed += [(j.trial, j.budget) for j in jobs]
        for job in order(jobs):
            scheduler.report(job, [losses[job.trial]])
    return handed


@pytest.mark.parametrize("order", [lambda jobs: jobs, lambda jobs: jobs[::-1]], ids=["in order", "reversed"])
def test_successive_halving_promotes_the_best_of_each_finished_rung_whatever_finishes_first(order):
    losses = {0: 0.7, 1: 0.6, 2: 0.4, 3: 0.6, 4: 0.9, 5: 0.5, 6: 0.8, 7: 0.3, 8: 0.65}
    jobs = _halving_jobs(SuccessiveHalving(1, 9, max_trials=9, eta=3), losses, order)
    assert jobs[:9] == [(t, 1) for t in range(9)]
    assert jobs[9:] == [(7, 3), (2, 3), (5, 3), (7, 9)]  # the best third, then its best
    # a tie at the cut goes to the lower trial id, in either report order
    tied = _halving_jobs(SuccessiveHalving(1, 2, max_trials=4, eta=2), {0: 0.9, 1: 0.5, 2: 0.8, 3: 0.5}, order)
    assert tied[4:] == [(1, 2), (3, 2)]
    assert _halving_jobs(SuccessiveHalving(1, 2, max_trials=3, eta=3), {0: 0.2, 1: 0.1, 2: 0.3}, order)[3:] == [(1, 2)]


def test_named_rungs_place_each_schedulers_budgets_and_bad_ones_are_refused():
    # a trial's loss at budget b: the one that ranks first at epoch 3 is last by epoch 4
    curves = {t: [0.5 + 0.01 * t] * 9 for t in range(9)}
    curves[8] = [0.4, 0.8, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    curves[0] = [0.3, 0.8, 0.2, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    geometric = replay_scheduler(SuccessiveHalving(1, 9, 9, eta=3), curves)
    named = replay_scheduler(SuccessiveHalving(1, 9, 9, eta=3, rungs=(1, 4, 9)), curves)
    assert sorted({b for _, b in named["jobs"]}) == [1, 4, 9] and named["trial_epochs"] == 9 + 3 * 3 + 5
    assert sorted({b for _, b in geometric["jobs"]}) == [1, 3, 9]
    assert (geometric["best_trial"], named["best_trial"]) == (0, 8)
    assert ASHA(1, 9, 27, eta=3, rungs=[1, 4, 9]).rungs == [1, 4, 9]
    hyperband = Hyperband(2, 10, eta=3, rungs=(2, 5, 10))
    assert hyperband.rungs == [2, 5, 10] and [n for _, n in hyperband.plan] == [9, 5, 3]
    bracket = hyperband.next_job(0)
    assert (bracket.budget, bracket.rung) == (2, 0)
    for rungs, message in (([1, 4, 4, 9], r"rungs \[1, 4, 4, 9\]: each budget must be larger"),
                           ([2, 4, 9], r"the first must be the smallest budget \(1\) and the last the full budget"),
                           ([1, 4, 8], "the last the full budget \\(9\\)"), ([1, 4.5, 9], "expected whole epochs"),
                           ([], "expected whole epochs")):
        with pytest.raises(InputError, match=message):
            SuccessiveHalving(1, 9, 9, eta=3, rungs=rungs)


def test_a_replayed_scheduler_sees_the_recorded_curves_and_pays_only_new_epochs():
    # 9 trials, 9 epochs each; trial 7 starts worst but ends best
    curves = {t: [0.5 + 0.05 * t - 0.01 * e for e in range(9)] for t in range(9)}
    curves[7] = [0.95, 0.9, 0.85, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    halving = replay_scheduler(SuccessiveHalving(1, 9, max_trials=9, eta=3), curves)
    assert halving["jobs"] == [(t, 1) for t in range(9)] + [(0, 3), (1, 3), (2, 3), (0, 9)]
    assert halving["trial_epochs"] == 9 + 3 * 2 + 6 and halving["budgets"][0] == 9
    assert (halving["best_trial"], halving["best_loss"]) == (0, curves[0][8]) and halving["full_budget"] == 9
    full = replay_scheduler(FullBudget(9, 9), curves)
    assert full["trial_epochs"] == 81 and full["best_trial"] == 7 and full["best_loss"] == 0.05
    with pytest.raises(InputError, match="asked for trial 9; the curves hold trials"):
        replay_scheduler(FullBudget(9, 10), curves)
    with pytest.raises(InputError, match="trial 0 at budget 9, but its curve has 3 epochs"):
        replay_scheduler(FullBudget(9, 1), {0: [0.3, 0.2, 0.1]})


def test_asha_promotes_whichever_trial_finished_first_where_halving_waits():
    """Why the pipeline uses `sha`: ASHA with 4 trials (eta 2) promotes the best of the first
    two to finish, even when a later one is better."""
    losses = {0: 0.73, 1: 0.62, 2: 0.40, 3: 0.59}
    asha, handed, new = ASHA(1, 2, max_trials=4, eta=2), [], 0
    while (job := asha.next_job(new)) is not None:  # one worker: jobs finish in the order handed out
        new += job.new
        handed.append((job.trial, job.budget))
        asha.report(job, [losses[job.trial]])
    assert handed[:3] == [(0, 1), (1, 1), (1, 2)]  # trial 1 promoted before trials 2 and 3 had run
    assert _halving_jobs(SuccessiveHalving(1, 2, max_trials=4, eta=2), losses, lambda jobs: jobs)[4:] == [(2, 2),
                                                                                                         (3, 2)]


def test_hyperband_brackets_use_fewer_epochs_than_full_budget():
    hb = Hyperband(1, 27, eta=3)
    assert [n for _, n in hb.plan] == [27, 12, 6, 4]
    epochs, jobs = 0, 0
    while not hb.done:
        job = hb.next_job(jobs)
        assert job is not None
        jobs += 1
        epochs += job.budget
        hb.report(job, [job.trial % 7])
    assert epochs < 27 * hb.trials_planned / 3
