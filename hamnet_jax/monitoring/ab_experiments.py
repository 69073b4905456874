"""A/B experiments: arms, sticky assignments, outcomes, and their statistics, on disk.

    store = ExperimentStore("experiments/")
    test = store.create("v2 vs v1", "model_a_b", {"A": {"version": "1"}, "B": {"version": "2"}},
                        weights={"A": 0.9, "B": 0.1}, primary_metric="abs_error")
    test.start()
    store.record(test.test_id, "subject-17", {"abs_error": 2.4, "latency": 0.004})
    store.statistics(test.test_id)

    ROOT/<test_id>/test.json          the experiment (rewritten atomically)
    ROOT/<test_id>/assignments.jsonl  unit -> arm, once per unit (fsynced appends)
    ROOT/<test_id>/outcomes.jsonl     unit, arm, metrics, covariates (fsynced appends)

A unit's arm is sticky: a hash of (test id, unit id) against the weights, the rule the
service's split uses (`serving/ab_split.py`) keyed by the test, so a repeated unit always
lands in the same arm. Arms chosen elsewhere (the service's own split) are recorded with
`record_assignment`. A crash loses at most the line being written: the next append cuts a torn
tail, and a line unreadable for any other reason is skipped, counted in `statistics`
(`unreadable_lines`) and logged, never hiding the lines after it.

Statistics per metric, each arm against the first (the control): Welch's t-test, or the
two-proportion z-test for a 0/1 metric; the always-valid mSPRT p-value (so a dashboard may
look at any time); CUPED when every outcome carries the named pre-period covariate; the
sample-ratio-mismatch check of the assignments against the weights; the power the arms
have for the observed difference and the size they would need for 80%.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import re
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import AppendLog, write_json_atomic
from hamnet_jax.monitoring.ab_statistics import (cuped, msprt, power, sample_ratio_mismatch, sample_size,
                                                 two_proportion_test, welch_test)


class ABTestType(enum.StrEnum):
    MODEL_A_B = "model_a_b"
    HYPERPARAMETER = "hyperparameter"
    FEATURE = "feature"
    TRAFFIC_SPLIT = "traffic_split"


STATUSES = ("created", "running", "stopped")


def sticky_unit(key: str) -> float:
    """A unit's position in [0, 1): the blake2b hash the service's split uses too."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


@dataclasses.dataclass
class ABTest:
    test_id: str
    name: str
    test_type: str
    arms: dict[str, dict[str, Any]]
    weights: dict[str, float]
    primary_metric: str | None = None
    covariate: str | None = None
    alpha: float = 0.05
    tau: float | None = None  # mSPRT mixing scale; None: 0.1 x the pooled std of the metric
    status: str = "created"
    created_at: float = 0.0
    started_at: float | None = None
    stopped_at: float | None = None
    store: ExperimentStore | None = dataclasses.field(default=None, repr=False, compare=False)

    def start(self) -> ABTest:
        return self._set_status("running", "started_at")

    def stop(self) -> ABTest:
        return self._set_status("stopped", "stopped_at")

    def _set_status(self, status: str, stamp: str) -> ABTest:
        if self.store is None:
            raise InputError(f"A/B test {self.test_id}: not attached to a store")
        setattr(self, stamp, time.time())
        self.status = status
        self.store.save(self)
        return self

    def arm_for(self, unit_id: str) -> str:
        u, edge = sticky_unit(f"{self.test_id}:{unit_id}"), 0.0
        for arm, share in self.weights.items():
            edge += share
            if u < edge:
                return arm
        return list(self.weights)[-1]


class ExperimentStore:
    """One writing process per experiment: assignments are read once and then kept in
    memory (recording is O(1), not a re-read of the log)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._assigned: dict[str, dict[str, str]] = {}
        self._unreadable: dict[str, int] = {}  # per test: assignment lines skipped as unreadable

    # -- experiments -------------------------------------------------------------------
    def create(self, name: str, test_type: str | ABTestType, arms: dict[str, dict[str, Any]],
               weights: dict[str, float] | None = None, primary_metric: str | None = None,
               covariate: str | None = None, alpha: float = 0.05, tau: float | None = None,
               test_id: str | None = None) -> ABTest:
        if str(test_type) not in {t.value for t in ABTestType}:
            raise InputError(f"A/B test type {test_type!r} is unknown; expected one of {[t.value for t in ABTestType]}")
        if len(arms) < 2:
            raise InputError(f"A/B test {name!r}: needs at least two arms, got {list(arms)}")
        weights = weights or {arm: 1.0 for arm in arms}
        if set(weights) != set(arms) or any(w <= 0 for w in weights.values()):
            raise InputError(f"A/B test {name!r}: weights {weights} must give every arm {list(arms)} a positive share")
        if not 0 < alpha < 1:
            raise InputError(f"A/B test {name!r}: alpha must be in (0, 1), got {alpha}")
        test_id = test_id or f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')[:40]}-{uuid.uuid4().hex[:8]}"
        if (self.root / test_id / "test.json").exists():
            raise InputError(f"A/B test {test_id!r} already exists in {self.root}")
        total = sum(weights.values())
        test = ABTest(test_id, name, str(test_type), {k: dict(v) for k, v in arms.items()},
                      {arm: weights[arm] / total for arm in arms}, primary_metric, covariate, alpha, tau,
                      created_at=time.time(), store=self)
        self.save(test)
        return test

    def save(self, test: ABTest) -> None:
        fields = {f.name: getattr(test, f.name) for f in dataclasses.fields(test) if f.name != "store"}
        write_json_atomic(self.root / test.test_id / "test.json", fields)

    def get(self, test_id: str) -> ABTest:
        path = self.root / test_id / "test.json"
        if not path.exists():
            known = sorted(p.parent.name for p in self.root.glob("*/test.json"))
            raise InputError(f"A/B test {test_id!r} does not exist in {self.root} (known: {known})")
        return ABTest(**json.loads(path.read_text()), store=self)

    def tests(self) -> list[ABTest]:
        return [self.get(p.parent.name) for p in sorted(self.root.glob("*/test.json"))]

    # -- assignments and outcomes ------------------------------------------------------
    def _log(self, test_id: str, name: str) -> AppendLog:
        return AppendLog(self.root / test_id / f"{name}.jsonl")

    def assignments(self, test_id: str) -> dict[str, str]:
        if test_id not in self._assigned:
            log = self._log(test_id, "assignments")
            self._assigned[test_id] = {row["unit"]: row["arm"] for row in log.read()}
            self._unreadable[test_id] = len(log.skipped)
        return self._assigned[test_id]

    def record_assignment(self, test_id: str, unit_id: str, arm: str | None = None) -> str:
        """The unit's arm: its earlier one, else `arm` (chosen elsewhere) or the sticky hash."""
        known = self.assignments(test_id)
        if str(unit_id) in known:
            if arm is not None and known[str(unit_id)] != arm:
                raise InputError(f"A/B test {test_id}: unit {unit_id!r} is in arm {known[str(unit_id)]!r}, "
                                 f"not {arm!r}; a unit stays in its arm")
            return known[str(unit_id)]
        test = self.get(test_id)
        if test.status != "running":
            raise InputError(f"A/B test {test_id} is {test.status}: start it before assigning units")
        arm = arm if arm is not None else test.arm_for(str(unit_id))
        if arm not in test.arms:
            raise InputError(f"A/B test {test_id}: arm {arm!r} is not one of {list(test.arms)}")
        self._log(test_id, "assignments").append({"unit": str(unit_id), "arm": arm, "time": time.time()})
        known[str(unit_id)] = arm
        return arm

    def record(self, test_id: str, unit_id: str, metrics: dict[str, float],
               covariates: dict[str, float] | None = None) -> str:
        """Record a unit's outcome (assigning it first if needed); returns its arm."""
        bad = [k for k, v in metrics.items() if not isinstance(v, (int, float)) or not math.isfinite(v)]
        if not metrics or bad:
            raise InputError(f"A/B test {test_id}: outcome metrics must be finite numbers; bad: {bad or 'none given'}")
        arm = self.record_assignment(test_id, unit_id)
        self._log(test_id, "outcomes").append({"unit": str(unit_id), "arm": arm, "metrics": metrics,
                                               "covariates": covariates or {}, "time": time.time()})
        return arm

    # -- analysis ----------------------------------------------------------------------
    def statistics(self, test_id: str) -> dict[str, Any]:
        test = self.get(test_id)
        assigned = self.assignments(test_id)
        outcome_log = self._log(test_id, "outcomes")
        outcomes = outcome_log.read()
        arms = list(test.arms)
        counts = [sum(1 for a in assigned.values() if a == arm) for arm in arms]
        out: dict[str, Any] = {"test_id": test_id, "name": test.name, "status": test.status, "arms": arms,
                               "assigned": dict(zip(arms, counts, strict=True)), "outcomes": len(outcomes),
                               "unreadable_lines": {"assignments": self._unreadable.get(test_id, 0),
                                                    "outcomes": len(outcome_log.skipped)}}
        if sum(counts) and all(c > 0 for c in counts):
            out["sample_ratio_mismatch"] = sample_ratio_mismatch(counts, [test.weights[a] for a in arms])
        metrics = sorted({m for row in outcomes for m in row["metrics"]})
        out["metrics"] = {m: self._metric(test, outcomes, m) for m in metrics}
        primary = test.primary_metric or (metrics[0] if metrics else None)
        comparisons = out["metrics"].get(primary, {}).get("comparisons", {})
        out["primary_metric"] = primary
        out["significance"] = min((c["p_value"] for c in comparisons.values()), default=None)
        out["significant"] = any(c["significant"] for c in comparisons.values())
        return out

    def _metric(self, test: ABTest, outcomes: list[dict[str, Any]], metric: str) -> dict[str, Any]:
        arms = list(test.arms)
        rows = {arm: [r for r in outcomes if r["arm"] == arm and metric in r["metrics"]] for arm in arms}
        values = {arm: np.array([r["metrics"][metric] for r in rows[arm]], float) for arm in arms}
        summary = {arm: {"n": int(v.size), "mean": float(v.mean()) if v.size else math.nan,
                         "std": float(v.std(ddof=1)) if v.size > 1 else math.nan} for arm, v in values.items()}
        out: dict[str, Any] = {"arms": summary, "comparisons": {}}
        control = arms[0]
        comparisons = len(arms) - 1
        alpha = test.alpha / comparisons  # Bonferroni over the arms compared with the control
        for arm in arms[1:]:
            a, b = values[control], values[arm]
            if a.size < 2 or b.size < 2:
                continue
            if np.ptp(a) == 0 and np.ptp(b) == 0:  # no noise to test against: the difference is what it is
                same = bool(a[0] == b[0])
                out["comparisons"][f"{arm} vs {control}"] = {
                    "test": "none (both arms constant)", "difference": float(b[0] - a[0]), "p_value": float(same),
                    "always_valid_p_value": float(same), "significant": not same, "alpha": alpha}
                continue
            binary = bool(np.isin(np.concatenate([a, b]), (0.0, 1.0)).all())
            fixed = (two_proportion_test(int(a.sum()), a.size, int(b.sum()), b.size, alpha) if binary
                     else welch_test(a, b, alpha))
            pooled = float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)) or 1.0
            sequential = msprt(a, b, test.tau or 0.1 * pooled, alpha)
            row = {"test": "two_proportion_z" if binary else "welch_t", **fixed,
                   "always_valid_p_value": sequential["p_value"],
                   "power_for_observed_difference": power(fixed["difference"], pooled, a.size, b.size, alpha)
                   if fixed["difference"] else 0.0}
            if fixed["difference"]:
                row["needed_per_arm_for_80_percent_power"] = sample_size(fixed["difference"], pooled, alpha)["n_a"]
            cov = test.covariate
            if cov and all(cov in r["covariates"] for r in rows[control] + rows[arm]):
                x = np.array([r["covariates"][cov] for r in rows[control] + rows[arm]], float)
                adjusted = cuped(np.concatenate([a, b]), x, np.r_[np.zeros(a.size, int), np.ones(b.size, int)])
                cuped_test = welch_test(adjusted["a"], adjusted["b"], alpha)
                row["cuped"] = {"theta": adjusted["theta"], "variance_reduction": adjusted["variance_reduction"],
                                **{k: cuped_test[k] for k in ("difference", "p_value", "ci_low", "ci_high",
                                                              "significant")}}
            row["alpha"] = alpha
            out["comparisons"][f"{arm} vs {control}"] = row
        return out
