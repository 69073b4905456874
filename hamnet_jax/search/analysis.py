"""What a finished (or running) study found: best trials, the Pareto front, convergence,
parameter importance, and TensorBoard HParams.

    report = analyze_study(store_root, objectives)      # -> dict, also written as analysis.json
    write_plots(report, out_dir)                        # pareto_front.png, convergence.png

Trials trained to different budgets are not comparable, so the front and the best trials
are taken over the trials that reached the study's largest completed budget; the
convergence curve follows the events log (job completions in order) and plots the best
full-budget value of the first objective against the trial-epochs spent so far.

Parameter importance: a random forest (scikit-learn) fitted from the trials' parameters
to their lowest-rung loss on the first objective (every trial has one), importance =
mean decrease in impurity summed over a parameter's encoded columns and normalized to
one, as Optuna's `MeanDecreaseImpurityImportanceEvaluator` computes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hamnet_jax.search.pareto import fronts
from hamnet_jax.search.store import TrialRecord


def _finite(losses: Sequence[float | None]) -> bool:
    return all(x is not None and math.isfinite(x) for x in losses)


def result_at(record: TrialRecord, budget: int) -> dict[str, Any] | None:
    return next((r for r in record.results if r["budget"] == budget), None)


def trial_epochs(records: dict[int, TrialRecord]) -> int:
    """Epochs actually trained: a promoted trial resumes, so it costs its largest budget."""
    return sum(max((r["budget"] for r in rec.results), default=rec.budget if rec.status == "failed" else 0)
               for rec in records.values())


def full_budget(records: dict[int, TrialRecord]) -> int:
    return max((r["budget"] for rec in records.values() for r in rec.results), default=0)


def pareto_trials(records: dict[int, TrialRecord], budget: int | None = None) -> list[int]:
    """The non-dominated feasible trials among those that completed `budget` (default: the
    largest completed), by trial id."""
    budget = full_budget(records) if budget is None else budget
    done = [(t, result_at(rec, budget)) for t, rec in sorted(records.items())]
    done = [(t, r) for t, r in done if r is not None and _finite(r["losses"])]
    if not done:
        return []
    return sorted(done[i][0] for i in fronts([r["losses"] for _, r in done])[0])


def convergence(events: list[dict[str, Any]], budget: int) -> list[dict[str, float]]:
    """Per job completion: trial-epochs spent so far and the best first-objective loss
    among full-budget results so far (inf until one exists)."""
    started: dict[tuple[int, int], int] = {}
    trained: dict[int, int] = {}
    out, best = [], math.inf
    for event in events:
        key = (event["trial"], event["rung"])
        if event["event"] == "start":
            started[key] = event["budget"]
            continue
        b = started.get(key, 0)
        trained[event["trial"]] = max(trained.get(event["trial"], 0), b)
        loss = event["losses"][0]
        if b == budget and loss is not None and math.isfinite(loss):
            best = min(best, loss)
        out.append({"trial_epochs": float(sum(trained.values())), "best": best, "trial": event["trial"],
                    "budget": b, "loss": loss if loss is not None else math.inf})
    return out


def parameter_importance(records: dict[int, TrialRecord], seed: int = 0) -> dict[str, float]:
    """Mean-decrease-in-impurity importance of each parameter for the first objective's
    lowest-rung loss; {} with fewer than 4 finite trials (nothing to learn from)."""
    rows = [(rec.config, rec.results[0]["losses"][0]) for rec in records.values()
            if rec.results and _finite(rec.results[0]["losses"][:1])]
    if len(rows) < 4:
        return {}
    from sklearn.ensemble import RandomForestRegressor

    names = sorted({k for config, _ in rows for k in config})
    columns: list[tuple[str, Any]] = []  # (parameter, category or None for numeric)
    for name in names:
        values = [config.get(name) for config, _ in rows]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            columns.append((name, None))
        else:
            columns += [(name, level) for level in sorted({repr(v) for v in values})]
    x = np.array([[float(config.get(name, np.nan)) if level is None else float(repr(config.get(name)) == level)
                   for name, level in columns] for config, _ in rows])
    x = np.nan_to_num(x, nan=-1.0)  # a conditional parameter that is inactive
    y = np.array([loss for _, loss in rows])
    forest = RandomForestRegressor(n_estimators=64, max_depth=64, min_samples_split=2, random_state=seed)
    forest.fit(x, y)
    importance = {name: 0.0 for name in names}
    for (name, _), value in zip(columns, forest.feature_importances_, strict=False):
        importance[name] += float(value)
    total = sum(importance.values()) or 1.0
    return dict(sorted(((k, v / total) for k, v in importance.items()), key=lambda kv: -kv[1]))


def analyze_study(records: dict[int, TrialRecord], events: list[dict[str, Any]],
                  objectives: Sequence[str]) -> dict[str, Any]:
    """The study's figures as one JSON-able dict."""
    budget = full_budget(records)
    front = pareto_trials(records, budget)

    def row(t: int) -> dict[str, Any]:
        result = result_at(records[t], budget) or {}
        metrics = result.get("metrics", {})
        return {"trial": t, "config": records[t].config, "budget": budget,
                "objectives": {o: metrics.get(o) for o in objectives}, "metrics": metrics}

    finished = [t for t, rec in records.items() if result_at(rec, budget) and _finite(result_at(rec, budget)["losses"])]
    by_objective = {o: min(finished, key=lambda t, i=i: result_at(records[t], budget)["losses"][i])
                    for i, o in enumerate(objectives)} if finished else {}
    return {
        "trials": len(records), "failed": sum(rec.status == "failed" for rec in records.values()),
        "full_budget": budget, "trials_at_full_budget": len(finished), "trial_epochs": trial_epochs(records),
        "objectives": list(objectives),
        "pareto_front": [row(t) for t in front],
        "best": {o: row(t) for o, t in by_objective.items()},
        "importance": parameter_importance(records),
        "convergence": convergence(events, budget),
        "all": [{"trial": t, "budget": r["budget"], "feasible": _finite(r["losses"]),
                 "values": [r["metrics"].get(o) for o in objectives]}
                for t, rec in sorted(records.items()) for r in rec.results],
    }


def write_plots(report: dict[str, Any], out_dir: Path, reference: dict[str, float] | None = None) -> list[Path]:
    """`pareto_front.png` (first two objectives, every result, the front joined, an
    optional reference point such as the standard tier) and `convergence.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    objectives = report["objectives"]
    if len(objectives) >= 2:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        budgets = sorted({r["budget"] for r in report["all"]})
        for b in budgets:
            pts = [r["values"][:2] for r in report["all"] if r["budget"] == b and r["feasible"]]
            if pts:
                ax.scatter(*zip(*pts, strict=False), s=18, alpha=0.5, label=f"{b} epochs")
        front = sorted((r["objectives"][objectives[0]], r["objectives"][objectives[1]])
                       for r in report["pareto_front"])
        if front:
            ax.plot(*zip(*front, strict=False), "k-o", ms=6, mfc="none",
                    label=f"Pareto front ({report['full_budget']} epochs)")
        if reference:
            ax.scatter([reference[objectives[0]]], [reference[objectives[1]]], marker="*", s=200, c="red",
                       label=reference.get("label", "reference"), zorder=5)
        ax.set_xlabel(objectives[0])
        ax.set_ylabel(objectives[1])
        ax.legend(fontsize=8)
        ax.set_title("search: every trial's result, the full-budget front")
        fig.tight_layout()
        fig.savefig(out_dir / "pareto_front.png", dpi=120)
        plt.close(fig)
        written.append(out_dir / "pareto_front.png")
    curve = [c for c in report["convergence"] if math.isfinite(c["best"])]
    fig, ax = plt.subplots(figsize=(6, 4))
    every = [(c["trial_epochs"], c["loss"]) for c in report["convergence"] if math.isfinite(c["loss"])]
    if every:
        ax.scatter(*zip(*every, strict=False), s=12, alpha=0.4, label="each job's result")
    if curve:
        ax.step([c["trial_epochs"] for c in curve], [c["best"] for c in curve], where="post", c="k",
                label="best at the full budget")
    ax.set_xlabel("trial-epochs spent")
    ax.set_ylabel(objectives[0])
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "convergence.png", dpi=120)
    plt.close(fig)
    return written + [out_dir / "convergence.png"]


def write_hparams(records: dict[int, TrialRecord], objectives: Sequence[str], log_dir: Path) -> None:
    """One TensorBoard HParams session per trial (its config, its last result's metrics)."""
    from tensorboardX import SummaryWriter

    with SummaryWriter(str(log_dir)) as writer:
        for t, rec in sorted(records.items()):
            last = rec.last()
            if last is None:
                continue
            hparams = {k: v if isinstance(v, (bool, str, float, int)) else str(v) for k, v in rec.config.items()}
            hparams["budget"] = last["budget"]
            metrics = {f"search/{o}": float(x) for o, x in zip(objectives, last["losses"], strict=False)
                       if x is not None and math.isfinite(x)}
            writer.add_hparams(hparams, metrics, name=f"trial-{t:05d}")
