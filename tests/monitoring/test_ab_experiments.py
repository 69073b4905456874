"""A/B experiments on disk: sticky assignment, outcomes, statistics, crash safety."""

from __future__ import annotations

import numpy as np
import pytest

from hamnet_jax.errors import InputError
from hamnet_jax.monitoring.ab_experiments import ABTestType, ExperimentStore
from hamnet_jax.monitoring.ab_statistics import two_proportion_test, welch_test


def _store_with_test(tmp_path, **keys):
    store = ExperimentStore(tmp_path / "ab")
    test = store.create("v2 vs v1", ABTestType.MODEL_A_B, {"A": {"version": "1"}, "B": {"version": "2"}}, **keys)
    return store, test


def test_assignment_is_sticky_and_follows_the_weights(tmp_path):
    store, test = _store_with_test(tmp_path, weights={"A": 9, "B": 1})
    with pytest.raises(InputError, match="is created: start it before assigning"):
        store.record(test.test_id, "u1", {"err": 1.0})
    test.start()
    arms = [store.record_assignment(test.test_id, f"u{i}") for i in range(4000)]
    assert arms[:50] == [store.record_assignment(test.test_id, f"u{i}") for i in range(50)]  # sticky
    assert 0.07 < arms.count("B") / len(arms) < 0.13
    stats = store.statistics(test.test_id)
    assert stats["assigned"] == {"A": arms.count("A"), "B": arms.count("B")}
    assert not stats["sample_ratio_mismatch"]["mismatch"]
    with pytest.raises(InputError, match="unit 'u0' is in arm"):
        store.record_assignment(test.test_id, "u0", "B" if arms[0] == "A" else "A")
    assert store.get(test.test_id).weights == {"A": 0.9, "B": 0.1}


def test_statistics_match_the_tests_on_the_recorded_outcomes(tmp_path):
    store, test = _store_with_test(tmp_path, primary_metric="abs_error", covariate="pre_error")
    test.start()
    rng = np.random.default_rng(5)
    by_arm = {"A": ([], [], []), "B": ([], [], [])}
    for i in range(1200):
        pre = float(rng.normal(3.0, 1.0))
        arm = test.arm_for(f"s{i}")
        err = pre + float(rng.normal(0, 0.5)) - (0.15 if arm == "B" else 0.0)
        hit = float(rng.random() < (0.30 if arm == "B" else 0.22))
        assert store.record(test.test_id, f"s{i}", {"abs_error": err, "hit": hit}, {"pre_error": pre}) == arm
        for bucket, value in zip(by_arm[arm], (err, hit, pre), strict=True):
            bucket.append(value)
    stats = store.statistics(test.test_id)
    row = stats["metrics"]["abs_error"]["comparisons"]["B vs A"]
    expected = welch_test(by_arm["A"][0], by_arm["B"][0])
    assert row["test"] == "welch_t" and row["p_value"] == pytest.approx(expected["p_value"])
    assert row["difference"] == pytest.approx(expected["difference"])
    assert stats["significance"] == row["p_value"] and stats["primary_metric"] == "abs_error"
    assert row["always_valid_p_value"] >= row["p_value"]  # the price of being allowed to peek
    assert row["cuped"]["variance_reduction"] > 0.5 and row["cuped"]["significant"]
    assert row["cuped"]["ci_high"] - row["cuped"]["ci_low"] < 0.6 * (row["ci_high"] - row["ci_low"])
    hits = stats["metrics"]["hit"]["comparisons"]["B vs A"]
    a, b = by_arm["A"][1], by_arm["B"][1]
    assert hits["test"] == "two_proportion_z"
    assert hits["p_value"] == pytest.approx(two_proportion_test(int(sum(a)), len(a), int(sum(b)), len(b))["p_value"])


def test_a_skewed_split_is_flagged_and_a_torn_log_line_loses_only_itself(tmp_path):
    store, test = _store_with_test(tmp_path)
    test.start()
    for i in range(600):
        store.record_assignment(test.test_id, f"u{i}", "A" if i % 3 else "B")  # 2:1 where 1:1 was set
        store.record(test.test_id, f"u{i}", {"m": float(i % 7)})
    with open(tmp_path / "ab" / test.test_id / "outcomes.jsonl", "a") as f:
        f.write('{"unit": "u9999", "arm": "A", "metr')  # a crash mid-append
    stats = store.statistics(test.test_id)
    assert stats["sample_ratio_mismatch"]["mismatch"] and stats["outcomes"] == 600
    assert stats["unreadable_lines"] == {"assignments": 0, "outcomes": 1}
    store.record(test.test_id, "u1", {"m": 1.0})  # the next appends cut the torn tail first
    store.record(test.test_id, "u2", {"m": 2.0})
    stats = store.statistics(test.test_id)
    assert stats["outcomes"] == 602 and stats["unreadable_lines"]["outcomes"] == 0
    with open(tmp_path / "ab" / test.test_id / "assignments.jsonl", "r+b") as f:  # a line broken mid-file
        f.seek(40)
        f.write(b"\x00garbage")
    reopened = ExperimentStore(tmp_path / "ab").statistics(test.test_id)
    assert sum(reopened["assigned"].values()) == 599 and reopened["unreadable_lines"]["assignments"] == 1
    with pytest.raises(InputError, match="weights .* must give every arm"):
        store.create("bad", "model_a_b", {"A": {}, "B": {}}, weights={"A": 1.0})
    with pytest.raises(InputError, match="type 'x' is unknown"):
        store.create("bad", "x", {"A": {}, "B": {}})
    with pytest.raises(InputError, match="outcome metrics must be finite numbers; bad: \\['m'\\]"):
        store.record(test.test_id, "u1", {"m": float("nan")})
    assert [t.test_id for t in store.tests()] == [test.test_id]


def test_the_original_monitoring_facade(tmp_path, monkeypatch):
    import logging
    import urllib.request

    from hamnet_jax.optimization.monitoring import ABTestType as FacadeType
    from hamnet_jax.optimization.monitoring import HAMNetMonitoring, MonitoringConfig

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monitoring = HAMNetMonitoring(MonitoringConfig(log_level="info", enable_metrics=True, enable_alerting=True,
                                                   enable_ab_testing=True, metrics_port=0,
                                                   ab_test_dir=str(tmp_path / "ab")), run_id="runs/a")
    try:
        monitoring.start_monitoring()
        monitoring.log_training_progress(epoch=1, train_loss=0.5, val_loss=0.4, learning_rate=0.001)
        text = urllib.request.urlopen(f"http://127.0.0.1:{monitoring.metrics_port}/metrics").read().decode()
        assert 'hamnet_train_loss{split="val"} 0.4' in text and "hamnet_train_epoch 1.0" in text
        test = monitoring.create_ab_test("Model Comparison", FacadeType.MODEL_A_B,
                                         {"model": "hamnet_v1", "learning_rate": 0.001},
                                         {"model": "hamnet_v2", "learning_rate": 0.0001})
        test.start()
        rng = np.random.default_rng(0)
        for i in range(400):
            arm = test.arm_for(f"user_{i:03d}")
            latency = float(rng.normal(0.10 if arm == "A" else 0.08, 0.02))
            assert monitoring.record_ab_test_result(test.test_id, f"user_{i:03d}",
                                                    {"accuracy": 0.95, "latency": latency}) == arm
        stats = monitoring.get_test_statistics(test.test_id)
        assert stats["metrics"]["latency"]["comparisons"]["B vs A"]["significant"]
        assert stats["primary_metric"] == "accuracy" and stats["significance"] == 1.0 and not stats["significant"]
        assert stats["metrics"]["accuracy"]["comparisons"]["B vs A"]["test"] == "none (both arms constant)"
        monitoring.record_drift({"features": [{"psi": 0.5}], "drifted_features": ["x"]})
        assert [a["name"] for a in monitoring.check_alerts()] == ["HamnetInputDrift"]
        with pytest.raises(InputError, match="A/B testing is off"):
            HAMNetMonitoring(MonitoringConfig(ab_test_dir=str(tmp_path / "off"))).create_ab_test(
                "x", "model_a_b", {}, {})
    finally:
        monitoring.stop_monitoring()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
