"""A finished study's deliverables: analysis, plots, TensorBoard HParams, the best run."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("nevergrad")

from hamnet_jax.search.engine import Objective, run_study  # noqa: E402
from hamnet_jax.search.proposers import Proposer  # noqa: E402
from hamnet_jax.search.schedulers import ASHA, FullBudget  # noqa: E402
from hamnet_jax.search.space import Choice, Float, SearchSpace  # noqa: E402
from hamnet_jax.search.store import open_study  # noqa: E402


def test_a_finished_study_is_analyzed_plotted_logged_and_its_best_run_kept(tmp_path):
    from hamnet_jax.search.finalize import finalize_study

    space = SearchSpace({"x": Float(-2.0, 2.0), "kind": Choice(["a", "b"]), "noise": Float(0.0, 1.0)})

    def trial(config, budget, run_dir, trial):  # x matters, noise barely, kind not at all
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "weights.txt").write_text(f"{trial} {budget}")
        return {"f": (config["x"] - 0.5) ** 2 + 0.01 * config["noise"] + 1.0 / budget, "size": abs(config["x"])}

    objectives = [Objective("f"), Objective("size")]
    store = open_study(tmp_path / "study", {"kind": "analysis"}, resume=False)
    records = run_study(store, space, objectives, ASHA(1, 4, max_trials=24, eta=2),
                        Proposer(space, "random", 24, seed=0), trial)
    report = finalize_study(store, records, objectives, 4, trial)
    saved = json.loads((store.root / "analysis.json").read_text())
    assert saved["trials"] == 24 and saved["full_budget"] == 4 and saved["trial_epochs"] == report["trial_epochs"]
    at_full = {t: r for t, rec in records.items() for r in rec.results if r["budget"] == 4}
    front = {row["trial"] for row in saved["pareto_front"]}
    assert front and front <= set(at_full)
    for t in front:  # nobody at the full budget dominates a front member
        assert not any(all(a <= b for a, b in zip(at_full[o]["losses"], at_full[t]["losses"], strict=True))
                       and at_full[o]["losses"] != at_full[t]["losses"] for o in at_full)
    best = min(at_full, key=lambda t: at_full[t]["losses"][0])
    assert saved["best_run"]["trial"] == best == saved["best"]["f"]["trial"]
    assert (store.root / "best" / "weights.txt").read_text() == f"{best} 4"
    assert max(saved["importance"], key=saved["importance"].get) == "x"
    assert abs(sum(saved["importance"].values()) - 1) < 1e-9
    curve = [c["best"] for c in saved["convergence"] if c["best"] is not None and c["best"] < float("inf")]
    assert curve == sorted(curve, reverse=True) and curve[-1] == at_full[best]["losses"][0]
    epochs = [c["trial_epochs"] for c in saved["convergence"]]
    assert epochs == sorted(epochs) and epochs[-1] == saved["trial_epochs"]
    assert {p.name for p in (store.root / "plots").iterdir()} == {"pareto_front.png", "convergence.png"}
    sessions = [p for p in (store.root / "tb").iterdir() if p.is_dir()]
    assert len(sessions) == 24 and all(any(s.glob("events.out.tfevents.*")) for s in sessions)


def test_the_best_trial_is_trained_on_when_none_reached_the_full_budget(tmp_path):
    from hamnet_jax.search.finalize import write_best_run

    space = SearchSpace({"x": Float(0.0, 1.0)})
    calls = []

    def trial(config, budget, run_dir, trial):
        calls.append((trial, budget))
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "budget.txt").write_text(str(budget))
        return {"f": config["x"] + 1.0 / budget}

    store = open_study(tmp_path / "study", {"kind": "short"}, resume=False)
    records = run_study(store, space, [Objective("f")], FullBudget(2, 3), Proposer(space, "random", 3, seed=1),
                        trial)
    best = min(records, key=lambda t: records[t].config["x"])
    out = write_best_run(store, records, [Objective("f")], 6, trial)
    assert out["trial"] == best and calls[-1] == (best, 6)
    assert (store.root / "best" / "budget.txt").read_text() == "6"
    assert json.loads((store.trials_dir / f"{best:05d}.json").read_text())["results"][-1]["budget"] == 6
