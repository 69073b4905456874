"""experiments/bench_model_quality.py keeps a stored row only while its variant still resolves to
the config the row was trained with: a row trained under defaults since changed is dropped."""

from __future__ import annotations

from experiments.bench_mean_protection import config_digest, variant_config
from experiments.bench_model_quality import kept_rows, seeded, world_digests


def _row(variant: str, seed: int, mae: float) -> dict:
    return {"mae": mae, "config_sha256": config_digest(variant_config(seeded(variant, seed)))}


def test_a_stored_row_is_kept_only_while_its_config_is_current():
    current = _row("weight_average", 0, 2.7)
    stale = {"mae": 2.9, "config_sha256": "trained-under-other-defaults"}
    unmarked = {"mae": 3.0}  # a row written before rows carried their config
    previous = {"0": {"HAMNet (weight_average)": current, "HAMNet (piecewise_linear)": stale,
                      "HAMNet (base_tier)": unmarked, "HAMNet (a variant since removed)": {"mae": 2.5},
                      "ridge": {"mae": 3.5}}}
    fresh = {0: {"HAMNet (default)": _row("default", 0, 2.6), "ridge": {"mae": 3.4}}}
    rows = kept_rows(previous, fresh, world_digests)[0]
    assert set(rows) == {"HAMNet (default)", "HAMNet (weight_average)", "ridge"}
    assert rows["ridge"]["mae"] == 3.4  # what this run measured wins


def test_rows_of_another_set_of_seeds_are_not_mixed_in():
    previous = {"1": {"HAMNet (weight_average)": _row("weight_average", 1, 2.7)}}
    fresh = {0: {"HAMNet (default)": _row("default", 0, 2.6)}}
    assert kept_rows(previous, fresh, world_digests) == fresh


def test_the_digest_follows_the_seed_and_the_variant():
    digests = world_digests(0)
    assert digests["HAMNet (default)"] != digests["HAMNet (weight_average)"]
    assert digests["HAMNet (default)"] != world_digests(1)["HAMNet (default)"]
