"""A study's deliverables, written once it has run:

    STUDY/analysis.json        best trials, Pareto front, convergence, parameter importance
    STUDY/plots/*.png          pareto_front.png (two or more objectives), convergence.png
    STUDY/tb/                  one TensorBoard HParams session per trial
    STUDY/best/                the best trial's run directory, trained to the full budget:
                               `hamnet evaluate`, `export` and `serve` take it as it is

"Best" is the first objective's best among the feasible trials that reached the full
budget. When none did (a study stopped early), the best at the largest budget reached
is trained on to the full budget first: its run resumes from its checkpoints.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from typing import Any

from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import AppendLog, write_json_atomic
from hamnet_jax.search.analysis import analyze_study, full_budget, result_at, write_hparams, write_plots
from hamnet_jax.search.engine import Objective, losses_of
from hamnet_jax.search.store import StudyStore, TrialRecord


def best_trial(records: dict[int, TrialRecord], budget: int) -> int | None:
    scored = [(r["losses"][0], t) for t, rec in records.items() if (r := result_at(rec, budget)) is not None
              and r["losses"][0] is not None and r["losses"][0] != float("inf")]
    return min(scored)[1] if scored else None


def write_best_run(store: StudyStore, records: dict[int, TrialRecord], objectives: Sequence[Objective],
                   max_budget: int, trial_fn: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Copy (training further first if needed) the best trial's run to STUDY/best."""
    trial = best_trial(records, max_budget)
    if trial is None:
        reached = full_budget(records)
        trial = best_trial(records, reached)
        if trial is None:
            raise InputError(f"study {store.root}: no trial finished with finite objectives; nothing to keep")
        record = records[trial]
        metrics = trial_fn(dict(record.config), max_budget, store.run_dir(trial), trial)
        # rung -1: a result outside the scheduler's rungs (never mistaken for one on resume)
        record.results.append({"budget": max_budget, "rung": -1, "metrics": metrics,
                               "losses": losses_of(metrics, objectives, ())})
        store.save(record)
    best = store.root / "best"
    staging = store.root / ".best.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(store.run_dir(trial), staging)
    shutil.rmtree(best, ignore_errors=True)
    staging.rename(best)  # a crash leaves the old best or the staging copy, never half a run
    return {"trial": trial, "config": records[trial].config, "budget": max_budget, "run_dir": str(best),
            "metrics": result_at(records[trial], max_budget)["metrics"]}


def finalize_study(store: StudyStore, records: dict[int, TrialRecord], objectives: Sequence[Objective],
                   max_budget: int, trial_fn: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write analysis.json, the plots, the HParams log and (given `trial_fn`) STUDY/best."""
    names = [o.metric for o in objectives]
    best = write_best_run(store, records, objectives, max_budget, trial_fn) if trial_fn is not None else None
    report = analyze_study(records, AppendLog(store.root / "events.jsonl").read(), names)
    if best is not None:
        report["best_run"] = best
    report["plots"] = [str(p) for p in write_plots(report, store.root / "plots")]
    shutil.rmtree(store.root / "tb", ignore_errors=True)  # rewritten whole: one session per trial
    write_hparams(records, names, store.root / "tb")
    write_json_atomic(store.root / "analysis.json", report)
    return report
