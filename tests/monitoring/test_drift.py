"""Drift against the training profile a run keeps: PSI / KS against scipy, and `hamnet
drift` on a cohort with shifted lifestyle and missing imaging."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from hamnet_jax.cohort.default import generate_cohort
from hamnet_jax.data.profile import QUANTILES, DataProfile
from hamnet_jax.data.tables import write_table
from hamnet_jax.monitoring.drift import ks_against_quantiles, psi
from tests.conftest import TINY_DIMS

stats = pytest.importorskip("scipy.stats")


def test_ks_against_stored_quantiles_agrees_with_scipy_two_sample():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 20000)
    for new in (rng.normal(0.08, 1, 3000), rng.normal(0, 1, 3000), (rng.random(3000) < 0.6).astype(float)):
        base = ref if new.max() > 1 else (rng.random(20000) < 0.5).astype(float)
        ours, p = ks_against_quantiles(np.quantile(base, QUANTILES), base.size, new)
        theirs = stats.ks_2samp(base, new)
        assert ours == pytest.approx(theirs.statistic, abs=0.006)
        assert (p < 0.01) == (theirs.pvalue < 0.01)


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift():
    even = np.full(10, 0.1)
    assert psi(even, even) == pytest.approx(0.0)
    shifted = np.array([0.02, 0.03, 0.05, 0.08, 0.1, 0.12, 0.14, 0.15, 0.15, 0.16])
    assert psi(even, shifted) > psi(even, (even + shifted) / 2) > 0.0


def _shifted_cohort(root, seed: int, shift_lifestyle: float, drop_imaging: bool):
    frame, schema = generate_cohort(240, seed=seed, dims=TINY_DIMS)
    lifestyle = [c for c in schema["modalities"]["lifestyle"] if c not in (schema.get("categorical") or {})]
    for c in lifestyle:
        frame[c] = frame[c] + shift_lifestyle * frame[c].std()
    if drop_imaging:
        frame[list(schema["modalities"]["imaging"])] = np.nan
    path = root / f"new-{seed}.parquet"
    write_table(frame, path)
    path.with_name(path.stem + ".schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    return path, lifestyle


def test_hamnet_drift_flags_shifted_lifestyle_and_missing_imaging_only(tiny_run, tmp_path, capsys):
    from hamnet_jax.cli import main

    profile = DataProfile.load(tiny_run / "data_profile.npz")
    assert profile.predictions is not None and set(profile.modality_absent) == {"clinical", "imaging", "genetic",
                                                                                 "lifestyle"}
    shifted, lifestyle = _shifted_cohort(tmp_path, seed=11, shift_lifestyle=1.0, drop_imaging=True)
    out = tmp_path / "drift.json"
    assert main(["drift", "--run", str(tiny_run), "--data", str(shifted), "--out", str(out),
                 "--fail-on-drift"]) == 3
    report = json.loads(out.read_text())
    assert sorted(report["drifted_features"]) == sorted(lifestyle)
    assert report["drifted_modalities"] == ["imaging"]
    imaging = set(yaml.safe_load((tiny_run / "schema.yaml").read_text())["modalities"]["imaging"])
    assert imaging <= set(report["missingness_drifted_features"])
    assert "modality imaging: absent at" in capsys.readouterr().out

    same, _ = _shifted_cohort(tmp_path, seed=12, shift_lifestyle=0.0, drop_imaging=False)
    assert main(["drift", "--run", str(tiny_run), "--data", str(same), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["drifted_features"] == [] and report["drifted_modalities"] == []
    assert not report["prediction_drifted"]
    assert report["subjects"] == report["subjects_in_file"] == 240
    assert main(["drift", "--run", str(tiny_run), "--data", str(same), "--fail-on-drift"]) == 0  # a fresh draw
    assert main(["drift", "--run", str(tiny_run), "--data", str(tmp_path / "missing.parquet"), "--fail-on-drift"]) == 2


def test_drift_of_a_large_file_is_checked_on_a_seeded_sample(tiny_run, tmp_path, monkeypatch):
    from hamnet_jax.data import profile
    from hamnet_jax.monitoring.drift_check import check_run_drift

    shifted, lifestyle = _shifted_cohort(tmp_path, seed=11, shift_lifestyle=1.0, drop_imaging=True)
    monkeypatch.setattr(profile, "PROFILE_SUBJECTS", 150)
    report = check_run_drift(tiny_run, shifted)
    assert report["subjects_in_file"] == 240 and report["subjects"] == 150
    assert sorted(report["drifted_features"]) == sorted(lifestyle) and report["drifted_modalities"] == ["imaging"]


def test_live_drift_window_gives_the_batch_reports_figures(tiny_run, tmp_path):
    """What the service exports (a window of answered requests) equals `hamnet drift` on the same subjects."""
    from hamnet_jax.data.dataset import load_cohort
    from hamnet_jax.inference.raw_inputs import cohort_to_raw
    from hamnet_jax.inference.raw_model import RawModel
    from hamnet_jax.monitoring.drift_check import check_run_drift
    from hamnet_jax.monitoring.live_drift import LiveDrift
    from hamnet_jax.runs.run_dir import load_run

    shifted, lifestyle = _shifted_cohort(tmp_path, seed=11, shift_lifestyle=1.0, drop_imaging=True)
    batch = check_run_drift(tiny_run, shifted, predictions=False)
    run = load_run(tiny_run)
    raw = RawModel.from_run(run, 0)
    request = cohort_to_raw(load_cohort(shifted, run.schema, run.config.data, require_target=False), raw.spec)
    live = LiveDrift(DataProfile.load(tiny_run / "data_profile.npz"), raw.spec.widths, window=1000, max_age_s=0)
    n = len(request["visit_times"])
    for start in range(0, n, 7):  # as requests arrive: a few subjects at a time
        live.observe({k: v[start:start + 7] for k, v in request.items()})
    report = live.report()
    assert report["window_subjects"] == n == batch["subjects"]
    assert sorted(report["drifted_features"]) == sorted(batch["drifted_features"]) == sorted(lifestyle)
    assert report["drifted_modalities"] == batch["drifted_modalities"] == ["imaging"]
    ours = {r["feature"]: r["psi"] for r in report["features"]}
    theirs = {r["feature"]: r["psi"] for r in batch["features"]}
    assert ours.keys() == theirs.keys()
    assert all(ours[k] == pytest.approx(theirs[k], rel=1e-5, abs=1e-9) or (np.isnan(ours[k]) and np.isnan(theirs[k]))
               for k in ours)
    with pytest.raises(ValueError, match="do not match the run's data profile"):
        LiveDrift(DataProfile.load(tiny_run / "data_profile.npz"), (("clinical", 3),))


def test_a_request_larger_than_the_live_window_keeps_its_last_subjects(tiny_run, tmp_path):
    """One request of n subjects in a window of 100 leaves the window as 100 requests of one
    subject each would: its last 100, in their slots, with all n counted as observed."""
    from hamnet_jax.data.dataset import load_cohort
    from hamnet_jax.inference.raw_inputs import cohort_to_raw
    from hamnet_jax.inference.raw_model import RawModel
    from hamnet_jax.monitoring.live_drift import LiveDrift
    from hamnet_jax.runs.run_dir import load_run

    shifted, _ = _shifted_cohort(tmp_path, seed=3, shift_lifestyle=0.0, drop_imaging=False)
    run = load_run(tiny_run)
    raw = RawModel.from_run(run, 0)
    request = cohort_to_raw(load_cohort(shifted, run.schema, run.config.data, require_target=False), raw.spec)
    n = len(request["visit_times"])
    assert n > 100
    profile = DataProfile.load(tiny_run / "data_profile.npz")
    whole = LiveDrift(profile, raw.spec.widths, window=100, max_age_s=0)
    whole.observe(request, np.arange(n, dtype=np.float32))
    one_by_one = LiveDrift(profile, raw.spec.widths, window=100, max_age_s=0)
    for row in range(n):
        one_by_one.observe({k: v[row:row + 1] for k, v in request.items()}, np.array([row], np.float32))
    assert whole.seen == one_by_one.seen == n
    np.testing.assert_array_equal(whole.values, one_by_one.values)
    np.testing.assert_array_equal(whole.predictions, one_by_one.predictions)
