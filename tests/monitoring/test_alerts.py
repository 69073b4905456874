"""Alert rules: in-process evaluation over windows (Prometheus' pending / firing
semantics) and the exported rule file."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from hamnet_jax.errors import InputError
from hamnet_jax.monitoring.alerts import AlertEvaluator, AlertRule, default_rules, write_rule_file


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_latency_and_error_alerts_pend_fire_and_resolve():
    clock = Clock()
    alerts = AlertEvaluator(default_rules(latency_p95_s=0.05, error_rate=0.01), clock)
    for _ in range(200):
        alerts.observe_request(0.004, ok=True)
        clock.now += 0.5
    assert alerts.firing() == []
    for i in range(100):  # slow requests: p95 over the threshold from now on
        alerts.observe_request(0.2, ok=i % 10 != 0)
        clock.now += 0.5
    states = {a["name"]: a for a in alerts.evaluate()}
    assert states["HamnetHighLatency"]["state"] == "pending" and states["HamnetErrorRate"]["state"] == "pending"
    assert states["HamnetErrorRate"]["value"] == pytest.approx(10 / 300)  # 10 failures in the 300 requests
    clock.now += 61
    assert alerts.firing() == ["HamnetErrorRate"]  # 60 s for errors, 120 s for latency
    clock.now += 60
    assert set(alerts.firing()) == {"HamnetHighLatency", "HamnetErrorRate"}
    clock.now += 400  # the window empties: nothing to judge, so the alerts resolve
    for _ in range(50):
        alerts.observe_request(0.003, ok=True)
    assert alerts.firing() == []


def test_drift_gauges_fire_at_once_and_bad_rules_are_named():
    alerts = AlertEvaluator(default_rules(psi=0.2), Clock())
    alerts.set_gauge("drift_psi_max", 0.05)
    assert alerts.firing() == []
    alerts.set_gauge("drift_psi_max", 0.35)
    assert alerts.firing() == ["HamnetInputDrift"]
    with pytest.raises(InputError, match="op must be '>' or '<'"):
        AlertRule("x", "error_rate", ">=", 0.1)
    with pytest.raises(InputError, match="duplicate names"):
        AlertEvaluator([AlertRule("a", "error_rate", ">", 0.1), AlertRule("a", "request_rate", "<", 1.0)])


def test_the_rule_file_is_prometheus_shaped_and_promtool_accepts_it(tmp_path):
    path = write_rule_file(default_rules(), tmp_path / "rules.yml")
    groups = yaml.safe_load(path.read_text())["groups"]
    rules = {r["alert"]: r for r in groups[0]["rules"]}
    assert rules["HamnetErrorRate"]["expr"] == (
        'sum(rate(hamnet_requests_total{status!="OK"}[300s])) / sum(rate(hamnet_requests_total[300s])) > 0.01')
    assert rules["HamnetHighLatency"]["for"] == "120s" and rules["HamnetInputDrift"]["expr"] == \
        "hamnet_drift_psi_max > 0.2"
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed: the rule file's PromQL is not checked")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
