"""The on-disk cohort cache: built in chunks, equal to the in-memory arrays, reused while the
file is unchanged, rebuilt after a kill; streaming statistics and batches equal in-memory ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hamnet_jax.cli import main
from hamnet_jax.data import cohort_cache
from hamnet_jax.data.arrays import CohortArrays
from hamnet_jax.data.cohort_batches import model_input
from hamnet_jax.data.cohort_cache import build_cohort_cache, load_cohort_cache
from hamnet_jax.data.dataset import load_cohort
from hamnet_jax.data.preprocess import Preprocessor
from hamnet_jax.data.tables import read_table, write_table
from hamnet_jax.config import config_from_dict
from hamnet_jax.errors import InputError
from hamnet_jax.modalities import MODALITIES

from ..conftest import TINY_CONFIG

ROOT = Path(__file__).resolve().parents[2]
DATA_CFG = config_from_dict({}).data


def entries(root):
    """The caches and partial builds under `root` (not its `.locks/`)."""
    return [d for d in root.iterdir() if not d.name.startswith(".")]


def assert_same_arrays(a: CohortArrays, b: CohortArrays) -> None:
    for m in MODALITIES:
        np.testing.assert_array_equal(a.values[m], b.values[m])
    for field in ("categorical", "visit_mask", "visit_times", "targets", "labels", "subject_ids"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.extras.keys() == b.extras.keys()
    for k in a.extras:
        np.testing.assert_array_equal(a.extras[k], b.extras[k])


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".npz"])
def test_the_cache_holds_what_the_in_memory_reader_builds(tiny_cohort, tmp_path, monkeypatch, suffix):
    data, schema = tiny_cohort
    frame = read_table(data).sample(frac=1.0, random_state=0)  # rows of a subject scattered over chunks
    path = tmp_path / f"cohort{suffix}"
    write_table(frame, path)
    monkeypatch.setattr(cohort_cache, "ROWS_PER_CHUNK", 97)  # ~10 chunks
    directory = build_cohort_cache(path, schema, DATA_CFG.max_visits, True, tmp_path / "cache")
    cached = load_cohort_cache(directory)
    assert isinstance(cached.features["values_imaging"], cohort_cache.MappedArray)
    expected = load_cohort(path, schema, DATA_CFG)
    assert_same_arrays(cached.in_memory(), expected)
    # a split of a split reads the same subjects as the in-memory one
    index = np.random.default_rng(0).permutation(expected.num_subjects)[:50]
    assert_same_arrays(cached.subset(index).subset(np.arange(10, 40)).rows(np.arange(30)),
                       expected.subset(index[10:40]))


def test_the_cache_is_reused_until_the_file_or_schema_changes(tiny_cohort, tmp_path):
    data, schema = tiny_cohort
    path = tmp_path / "c.parquet"
    path.write_bytes(data.read_bytes())
    root = tmp_path / "cache"
    first = build_cohort_cache(path, schema, 4, True, root)
    stamp = (first / "values_clinical.npy").stat().st_mtime_ns
    assert build_cohort_cache(path, schema, 4, True, root) == first
    assert (first / "values_clinical.npy").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert build_cohort_cache(path, schema, 3, True, root) != first  # another max_visits
    frame = read_table(path)
    frame.loc[0, schema.modalities["clinical"][0]] += 1.0  # one cell changed
    write_table(frame, path)
    changed = build_cohort_cache(path, schema, 4, True, root)
    assert changed != first
    assert load_cohort_cache(changed).rows(np.arange(240)).values["clinical"].tolist() != \
        load_cohort_cache(first).rows(np.arange(240)).values["clinical"].tolist()


def test_errors_name_the_file_row_across_chunks(tiny_cohort, tmp_path, monkeypatch):
    data, schema = tiny_cohort
    frame = read_table(data)
    column = schema.modalities["imaging"][3]
    frame[column] = frame[column].astype(object)
    row = len(frame) - 3  # in the last of several chunks
    frame.loc[row, column] = "high"
    path = tmp_path / "bad.csv"
    write_table(frame, path)
    monkeypatch.setattr(cohort_cache, "ROWS_PER_CHUNK", 100)
    with pytest.raises(InputError, match=rf"column '{column}': non-numeric value 'high' at row {row}"):
        build_cohort_cache(path, schema, 4, True, tmp_path / "cache")
    assert not entries(tmp_path / "cache")  # nothing half-built is left


def test_a_build_killed_midway_is_rebuilt(tmp_path):
    """SIGKILL at a named point in the feature pass (after its 2nd of 4 chunks), then the same
    build again: complete, equal to the in-memory arrays, and the killed build's leftovers are gone."""
    from hamnet_jax.cohort.default import CohortDims, generate_cohort
    from hamnet_jax.data.schema import Schema

    frame, raw_schema = generate_cohort(800, seed=1, dims=CohortDims(clinical=20, imaging=40, genetic=30,
                                                                       lifestyle_numeric=5))
    path = tmp_path / "big.csv"
    write_table(frame, path)
    schema = Schema.from_dict(raw_schema)
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(raw_schema))
    root = tmp_path / "cache"
    schema_file = str(tmp_path / "schema.yaml")
    rows_per_chunk = -(-len(frame) // 4)
    script = ("import hamnet_jax.data.cohort_cache as cache; from hamnet_jax.data.schema import Schema; "
              f"cache.ROWS_PER_CHUNK = {rows_per_chunk}; "
              f"cache.build_cohort_cache({str(path)!r}, Schema.load({schema_file!r}), 4, True, {str(root)!r})")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), HAMNET_KILL_AT="cohort_cache.chunk_written@2"))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "killed at cohort_cache.chunk_written@2" in proc.stderr
    assert [d.name.split(".partial-")[0] for d in entries(root)] == [cohort_cache.cache_key(path, schema, 4, True)]
    assert not any((d / cohort_cache.META).exists() for d in entries(root))  # no cache that looks complete
    directory = build_cohort_cache(path, schema, 4, True, root)
    assert [d.name for d in entries(root)] == [directory.name]
    assert_same_arrays(load_cohort_cache(directory).in_memory(), load_cohort(path, schema, DATA_CFG))


def test_streaming_statistics_and_batches_equal_the_in_memory_ones(tiny_cohort, tmp_path, monkeypatch):
    import warnings

    data, schema = tiny_cohort
    cached = load_cohort_cache(build_cohort_cache(data, schema, 4, True, tmp_path / "cache"))
    arrays = load_cohort(data, schema, DATA_CFG)
    monkeypatch.setattr("hamnet_jax.data.arrays.SUBJECTS_PER_CHUNK", 37)  # several chunks, a ragged last one
    pre = Preprocessor.fit(cached)
    same = Preprocessor.fit(arrays)
    for m in MODALITIES:  # identical: the same chunks in the same order
        np.testing.assert_array_equal(pre.means[m], same.means[m])
        np.testing.assert_array_equal(pre.stds[m], same.stds[m])
        x = arrays.values[m][arrays.visit_mask > 0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            np.testing.assert_allclose(pre.means[m], np.nan_to_num(np.nanmean(x.astype(np.float64), 0)), rtol=1e-6,
                                       atol=1e-6)
            sd = np.nanstd(x.astype(np.float64), 0)
        np.testing.assert_allclose(pre.stds[m], np.where(np.isfinite(sd) & (sd > 1e-8), sd, 1.0), rtol=1e-5)
    assert [lv.tolist() for lv in pre.levels] == [lv.tolist() for lv in same.levels]
    lazy, eager = model_input(pre, cached), model_input(pre, arrays)
    rows = np.array([5, 0, 239, 17, 17])
    for a, b in zip(jax_leaves(lazy.take(rows)), jax_leaves(eager.take(rows)), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(lazy.modality_mask, eager.modality_mask)
    for field in ("visit_mask", "targets", "labels"):
        np.testing.assert_array_equal(getattr(lazy, field), getattr(eager, field))
    padded = lazy.pad_visits(6)
    assert padded.visit_mask.shape == (240, 6) and padded.take(rows).visit_mask.shape == (5, 6)


def jax_leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)


def test_training_from_the_cache_equals_training_in_memory(tiny_run, tiny_cohort, tmp_path):
    """The default run (`tiny_run`: `data.cache: true`, batches prefetched) and the same
    config held in memory, each batch made when the step asks, see identical batches, so
    their metrics.jsonl are identical."""
    data, _ = tiny_cohort
    assert not (tiny_run / "data_cache").exists()  # the run refers to the shared cache, holds no copy
    key = cohort_cache.cache_key(data, tiny_cohort[1], 4, True)
    assert (cohort_cache.default_cache_root() / key / cohort_cache.META).exists()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**TINY_CONFIG, "data": {"cache": False},
                                      "training": {**TINY_CONFIG["training"], "prefetch_batches": 0}}))
    out = tmp_path / "in_memory"
    assert main(["train", "--data", str(data), "--config", str(config), "--out", str(out), "--quiet"]) == 0
    assert (out / "metrics.jsonl").read_text() == (tiny_run / "metrics.jsonl").read_text()
    a, b = (json.loads((d / "summary.json").read_text())["test"] for d in (tiny_run, out))
    assert a == b
    # evaluation reads the test split through the run's cache (modality removal included)
    # and gets the in-memory run's table
    from hamnet_jax.runs.evaluate import evaluate_run
    from hamnet_jax.runs.run_dir import load_run

    cached, in_memory = (evaluate_run(load_run(d), data, baselines=False) for d in (tiny_run, out))
    assert "HAMNet without imaging" in cached["rows"]
    assert cached["rows"] == in_memory["rows"]


def test_a_cached_cohort_without_a_modality_reads_it_as_missing(tiny_cohort, tmp_path):
    data, schema = tiny_cohort
    cached = load_cohort_cache(build_cohort_cache(data, schema, None, True, tmp_path))
    memory = load_cohort(data, schema, DATA_CFG)
    rows = np.array([7, 3, 100])
    for m in ("imaging", "lifestyle"):
        assert_same_arrays(cached.without_modality(m).subset(rows).in_memory(),
                           memory.without_modality(m).subset(rows))
    assert_same_arrays(cached.in_memory(), memory)  # the cohort itself is unchanged
    for cohort in (cached, memory):
        with pytest.raises(InputError, match="unknown modality 'retina'"):
            cohort.without_modality("retina")


def test_baselines_fit_on_a_seeded_sample_of_a_large_training_split(tiny_cohort, tmp_path):
    from hamnet_jax.evaluation.baselines import baseline_training_subjects

    data, schema = tiny_cohort
    cached = load_cohort_cache(build_cohort_cache(data, schema, None, True, tmp_path))
    memory = load_cohort(data, schema, DATA_CFG)
    sample = baseline_training_subjects(cached, 50, seed=4)
    assert sample.num_subjects == 50 and len(set(sample.subject_ids)) == 50
    assert_same_arrays(sample, baseline_training_subjects(memory, 50, seed=4))  # same draw, either storage
    assert set(sample.subject_ids) != set(baseline_training_subjects(cached, 50, seed=5).subject_ids)
    assert_same_arrays(baseline_training_subjects(cached, 10_000), memory)  # a small split: every subject
    with pytest.raises(InputError, match="baseline subjects: expected at least 1, got 0"):
        baseline_training_subjects(cached, 0)


def test_predict_streams_chunks_of_subjects_through_a_temporary_cache(tiny_run, tiny_cohort, tmp_path, monkeypatch):
    """`hamnet predict` in chunks of 50 subjects read from a cache writes what one in-memory
    request gives (to float32 rounding: chunks of 50 run in another compiled bucket), and
    leaves nothing but its CSV behind."""
    import pandas as pd

    from hamnet_jax.inference import predict_file
    from hamnet_jax.inference.predictors import JaxPredictor
    from hamnet_jax.inference.raw_inputs import cohort_to_raw, validate_raw
    from hamnet_jax.inference.raw_model import RawModel
    from hamnet_jax.runs.run_dir import load_run

    data, schema = tiny_cohort
    monkeypatch.setattr(predict_file, "PREDICT_CHUNK", 50)
    out = tmp_path / "pred" / "streamed.csv"
    assert main(["predict", "--run", str(tiny_run), "--data", str(data), "--out", str(out)]) == 0
    assert [p.name for p in out.parent.iterdir()] == ["streamed.csv"]
    predictor = JaxPredictor(RawModel.from_run(load_run(tiny_run)))
    whole = load_cohort(data, schema, DATA_CFG, require_target=False)
    pred = predictor.run_validated(validate_raw(cohort_to_raw(whole, predictor.spec), predictor.spec))
    got = pd.read_csv(out)
    assert list(got.columns) == ["subject_id", *pred]
    np.testing.assert_array_equal(got["subject_id"].astype(str), whole.subject_ids.astype(str))
    for name, values in pred.items():
        np.testing.assert_allclose(got[name], values, atol=1.5e-4, rtol=0, err_msg=name)


def test_a_run_directory_that_cannot_be_written_reads_the_file_into_memory(tiny_cohort, tmp_path, monkeypatch):
    import errno

    from hamnet_jax.data import dataset

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system", str(tmp_path / "cohorts"))

    data, schema = tiny_cohort
    monkeypatch.setattr(dataset, "build_cohort_cache", read_only)
    with pytest.warns(UserWarning, match="cohort cache not written .*Read-only file system.*into memory"):
        arrays = dataset.open_cohort(data, schema, DATA_CFG)
    assert_same_arrays(arrays, load_cohort(data, schema, DATA_CFG))


def hold_build_at_first_chunk(ready: str, go: str, *build_args) -> None:
    """Build a cache, pausing after its first chunk (the key's lock held) until `go` is written."""
    def pause(name):
        if name == "cohort_cache.chunk_written":
            with open(ready, "w") as f:
                f.write("paused")
            with open(go) as f:
                f.read()

    cohort_cache.kill_point = pause
    path, schema_file, root = build_args
    from hamnet_jax.data.schema import Schema
    print(build_cohort_cache(path, Schema.load(schema_file), 4, True, root))


def _blocked_on_a_lock(pid: int) -> bool:
    """Whether process `pid` waits for a file lock (a `->` line of /proc/locks)."""
    return any(line.split()[1] == "->" and line.split()[5] == str(pid)
               for line in Path("/proc/locks").read_text().splitlines() if len(line.split()) > 5)


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks to see a waiting process")
def test_two_processes_building_one_cache_build_it_once(tiny_cohort, tmp_path):
    """The first process holds the key's lock mid-build; the second waits on it (seen in
    /proc/locks, no sleep), then finds the cache complete. The second runs with a kill point
    at the first chunk it would write, so had it built anything it would have died."""
    data, _ = tiny_cohort
    schema_file = str(data.with_name("tiny.schema.yaml"))
    root = tmp_path / "cohorts"
    ready, go = tmp_path / "ready", tmp_path / "go"
    os.mkfifo(ready)
    os.mkfifo(go)
    first = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tests.data.test_cohort_cache import hold_build_at_first_chunk as h; "
         "h(*sys.argv[1:])", str(ready), str(go), str(data), schema_file, str(root)],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with open(ready) as f:
        assert f.read() == "paused"
    code = ("import sys; from hamnet_jax.data.cohort_cache import build_cohort_cache; "
            "from hamnet_jax.data.schema import Schema; "
            "print(build_cohort_cache(sys.argv[1], Schema.load(sys.argv[2]), 4, True, sys.argv[3]))")
    second = subprocess.Popen([sys.executable, "-c", code, str(data), schema_file, str(root)], cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT), HAMNET_KILL_AT="cohort_cache.chunk_written"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not _blocked_on_a_lock(second.pid):  # a condition, not a time: the second is waiting
        assert second.poll() is None, second.communicate()
    with open(go, "w") as f:
        f.write("go")
    out_first, err_first = first.communicate(timeout=300)
    out_second, err_second = second.communicate(timeout=300)
    assert first.returncode == 0, err_first
    assert second.returncode == 0, err_second  # it never reached a chunk of its own
    assert out_first == out_second and [d.name for d in entries(root)] == [Path(out_first.strip()).name]
    assert_same_arrays(load_cohort_cache(out_first.strip()).in_memory(), load_cohort(data, tiny_cohort[1], DATA_CFG))


def test_categorical_values_that_are_no_level_are_kept_exactly(tiny_cohort, tmp_path):
    data, schema = tiny_cohort
    frame = read_table(data)
    column = schema.categorical_columns[0]
    frame.loc[[3, 50], column] = [2.5, -7.0]  # no level of the schema: the preprocessor reads them as unknown
    path = tmp_path / "odd.parquet"
    write_table(frame, path)
    cached = load_cohort_cache(build_cohort_cache(path, schema, 4, True, tmp_path / "cache"))
    assert len(cached.others) == 2
    assert_same_arrays(cached.in_memory(), load_cohort(path, schema, DATA_CFG))
