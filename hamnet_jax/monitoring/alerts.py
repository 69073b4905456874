"""Alert rules: evaluated in-process over sliding windows, and exported as a Prometheus
rule file that says the same thing in PromQL.

    rules = default_rules()                     # latency p95, error rate, drift, throughput
    alerts = AlertEvaluator(rules)
    alerts.observe_request(latency_s=0.004, ok=True)     # what the service records anyway
    alerts.set_gauge("drift_psi_max", 0.31)              # what a drift check measured
    alerts.evaluate()                                    # -> [{name, state, value, ...}]
    write_rule_file(rules, "hamnet_rules.yml")           # `promtool check rules` accepts it

Semantics follow Prometheus: a rule's condition must hold continuously for `for_s`
seconds (state `pending` until then) before it `fires`; it resolves as soon as it stops
holding. Signals: `latency_p95_seconds` and `error_rate` over the last `window_s`
seconds of requests, `request_rate` (requests per second over the window), and any gauge
set by name (its latest value).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import write_atomic

WINDOWED = ("latency_p95_seconds", "error_rate", "request_rate")
# the PromQL of each windowed signal over the service's metrics (serving/metrics.py)
PROMQL = {
    "latency_p95_seconds": "histogram_quantile(0.95, sum by (le) (rate(hamnet_request_latency_seconds_bucket"
                           "[{window}])))",
    "error_rate": 'sum(rate(hamnet_requests_total{{status!="OK"}}[{window}])) / '
                  "sum(rate(hamnet_requests_total[{window}]))",
    "request_rate": "sum(rate(hamnet_requests_total[{window}]))",
}


@dataclasses.dataclass(frozen=True)
class AlertRule:
    name: str
    signal: str  # one of WINDOWED, or a gauge name (exported as the metric `hamnet_<signal>`)
    op: str  # ">" or "<"
    threshold: float
    window_s: float = 300.0
    for_s: float = 60.0
    severity: str = "warning"
    summary: str = ""

    def __post_init__(self) -> None:
        if self.op not in (">", "<"):
            raise InputError(f"alert {self.name!r}: op must be '>' or '<', got {self.op!r}")
        if self.window_s <= 0 or self.for_s < 0:
            raise InputError(f"alert {self.name!r}: need window_s > 0 and for_s >= 0, got {self.window_s}, "
                             f"{self.for_s}")

    def holds(self, value: float) -> bool:
        return not math.isnan(value) and (value > self.threshold if self.op == ">" else value < self.threshold)

    def promql(self) -> str:
        window = f"{int(self.window_s)}s"
        expr = PROMQL[self.signal].format(window=window) if self.signal in WINDOWED else f"hamnet_{self.signal}"
        return f"{expr} {self.op} {self.threshold:g}"


def default_rules(latency_p95_s: float = 0.05, error_rate: float = 0.01, psi: float = 0.2) -> list[AlertRule]:
    return [
        AlertRule("HamnetHighLatency", "latency_p95_seconds", ">", latency_p95_s, 300, 120, "warning",
                  f"p95 request latency above {latency_p95_s * 1e3:g} ms over 5 minutes"),
        AlertRule("HamnetErrorRate", "error_rate", ">", error_rate, 300, 60, "critical",
                  f"more than {error_rate:.0%} of requests failing over 5 minutes"),
        AlertRule("HamnetInputDrift", "drift_psi_max", ">", psi, 300, 0, "warning",
                  f"a feature's PSI against the training data above {psi:g}"),
        AlertRule("HamnetPredictionDrift", "prediction_drift_psi", ">", psi, 300, 0, "warning",
                  f"the predictions' PSI against validation above {psi:g}"),
    ]


class AlertEvaluator:
    def __init__(self, rules: Sequence[AlertRule], clock: Callable[[], float] = time.monotonic) -> None:
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise InputError(f"alert rules: duplicate names in {names}")
        self.rules, self.clock = list(rules), clock
        self.horizon = max((r.window_s for r in rules), default=0.0)
        self._requests: collections.deque[tuple[float, float, bool]] = collections.deque()
        self._gauges: dict[str, float] = {}
        self._since: dict[str, float] = {}  # rule -> when its condition started holding

    def observe_request(self, latency_s: float, ok: bool) -> None:
        now = self.clock()
        self._requests.append((now, latency_s, ok))
        while self._requests and self._requests[0][0] < now - self.horizon:
            self._requests.popleft()

    def set_gauge(self, name: str, value: float) -> None:
        self._gauges[name] = float(value)

    def signal(self, rule: AlertRule, now: float) -> float:
        if rule.signal not in WINDOWED:
            return self._gauges.get(rule.signal, math.nan)
        recent = [(lat, ok) for t, lat, ok in self._requests if t >= now - rule.window_s]
        if rule.signal == "request_rate":
            return len(recent) / rule.window_s
        if not recent:
            return math.nan
        if rule.signal == "error_rate":
            return sum(not ok for _, ok in recent) / len(recent)
        return float(np.percentile([lat for lat, _ in recent], 95))

    def evaluate(self) -> list[dict[str, Any]]:
        """Every rule's state now: inactive, pending or firing, with its signal's value."""
        now = self.clock()
        out = []
        for rule in self.rules:
            value = self.signal(rule, now)
            if rule.holds(value):
                since = self._since.setdefault(rule.name, now)
                state = "firing" if now - since >= rule.for_s else "pending"
            else:
                self._since.pop(rule.name, None)
                state = "inactive"
            out.append({"name": rule.name, "state": state, "value": value, "threshold": rule.threshold,
                        "severity": rule.severity, "summary": rule.summary})
        return out

    def firing(self) -> list[str]:
        return [a["name"] for a in self.evaluate() if a["state"] == "firing"]


def rule_file(rules: Sequence[AlertRule], group: str = "hamnet") -> dict[str, Any]:
    """The Prometheus alerting-rule file (as a dict) for these rules."""
    return {"groups": [{"name": group, "rules": [
        {"alert": r.name, "expr": r.promql(), "for": f"{int(r.for_s)}s", "labels": {"severity": r.severity},
         "annotations": {"summary": r.summary or r.name}} for r in rules]}]}


def write_rule_file(rules: Sequence[AlertRule], path: str | Path) -> Path:
    import yaml

    path = Path(path)
    write_atomic(path, lambda f: yaml.safe_dump(rule_file(rules), f, sort_keys=False))
    return path
