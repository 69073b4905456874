"""`hamnet cache list | prune` on a root holding a used cohort cache, an old one, a dead partial
build and fitted baselines."""

from __future__ import annotations

import json
import os
import time

from hamnet_jax.cli import main
from hamnet_jax.data.cohort_cache import META, build_cohort_cache, load_cohort_cache
from hamnet_jax.data.tables import read_table, write_table


def test_list_and_prune(tiny_cohort, tmp_path, capsys):
    data, schema = tiny_cohort
    top = tmp_path / "cache"
    root = top / "cohorts"
    fresh = build_cohort_cache(data, schema, 4, True, root)
    (top / "baselines").mkdir()
    fitted = top / "baselines" / "00aa.skops"
    fitted.write_bytes(b"fitted")
    other = tmp_path / "other.parquet"
    frame = read_table(data)
    write_table(frame.iloc[: len(frame) // 2], other)
    old = build_cohort_cache(other, schema, 4, True, root)
    month_ago = time.time() - 31 * 86400
    os.utime(old / META, (month_ago, month_ago))
    partial = root / "0123456789abcdef01234567.partial-999999"  # a killed build's leftovers
    partial.mkdir()
    (partial / "values_clinical.npy").write_bytes(b"x" * 100)

    assert main(["cache", "list", "--root", str(top), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    states = {r["key"]: (r["kind"], r["state"]) for r in listed["caches"]}
    assert states == {fresh.name: ("cohort", "complete"), old.name: ("cohort", "complete"),
                      "0123456789abcdef01234567": ("cohort", "partial"), "00aa": ("baselines", "complete")}
    assert main(["cache", "list", "--root", str(top)]) == 0
    assert "fitted baselines" in capsys.readouterr().out
    assert next(r for r in listed["caches"] if r["key"] == fresh.name)["subjects"] == 240

    assert main(["cache", "prune", "--root", str(top)]) == 0  # only the dead partial build
    assert "removed 1 cache entries" in capsys.readouterr().out and not partial.exists()
    assert main(["cache", "prune", "--root", str(top), "--older-than", "30"]) == 0
    assert not old.exists() and fresh.exists() and fitted.exists()
    load_cohort_cache(fresh)  # reading marks it used
    assert main(["cache", "prune", "--root", str(top), "--all"]) == 0
    assert not fresh.exists() and not fitted.exists()
    # a pruned cache is rebuilt by the next run that needs it
    assert (build_cohort_cache(data, schema, 4, True, root) / META).exists()
    assert main(["cache", "prune", "--root", str(top), "--all", "--older-than", "3"]) == 2
    assert "give one of them" in capsys.readouterr().err
