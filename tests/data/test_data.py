import re

import numpy as np
import pandas as pd
import pytest

from hamnet_jax.config import DataConfig
from hamnet_jax.data.arrays import check_trainable, frame_to_arrays
from hamnet_jax.data.dataset import load_cohort
from hamnet_jax.data.preprocess import Preprocessor
from hamnet_jax.data.schema import Schema, sidecar_path
from hamnet_jax.data.split import split_subjects
from hamnet_jax.data.tables import read_table, write_table
from hamnet_jax.errors import InputError


@pytest.fixture(scope="module")
def frame(tiny_cohort):
    return read_table(tiny_cohort[0])


def test_csv_parquet_npz_load_identically(tiny_cohort, frame, tmp_path):
    _, schema = tiny_cohort
    ref = load_cohort(tiny_cohort[0], schema, DataConfig())
    for ext in ("csv", "npz"):
        path = tmp_path / f"c.{ext}"
        write_table(frame, path)
        got = load_cohort(path, schema, DataConfig())
        for m in ref.values:
            np.testing.assert_allclose(got.values[m], ref.values[m], rtol=1e-6)
        np.testing.assert_array_equal(got.subject_ids, ref.subject_ids)
        np.testing.assert_allclose(got.targets, ref.targets, rtol=1e-6)


def test_nan_features_become_mask_zero_and_row_order_does_not_matter(tiny_cohort, frame):
    _, schema = tiny_cohort
    shuffled = frame.sample(frac=1.0, random_state=0)
    a, b = frame_to_arrays(frame, schema), frame_to_arrays(shuffled, schema)
    np.testing.assert_array_equal(a.subject_ids, np.sort(a.subject_ids))
    np.testing.assert_allclose(a.values["clinical"], b.values["clinical"])
    pre = Preprocessor.fit(a)
    batch = pre.transform(a)
    for m in a.values:
        nan = np.isnan(a.values[m])
        assert np.all(batch.feature_masks[m][nan] == 0) and np.all(batch.inputs[m][nan] == 0)
        assert np.all(np.isfinite(batch.inputs[m]))
    assert np.all(batch.visit_times <= 0)


def test_target_is_the_last_visit(tiny_cohort, frame):
    _, schema = tiny_cohort
    a = frame_to_arrays(frame, schema)
    last = frame.sort_values(["subject_id", "visit"]).groupby("subject_id").tail(1)
    np.testing.assert_allclose(a.targets, last["age"].to_numpy(), rtol=1e-6)


def test_max_visits_keeps_most_recent(tiny_cohort, frame):
    _, schema = tiny_cohort
    a = frame_to_arrays(frame, schema, max_visits=2)
    assert a.visit_mask.shape[1] == 2
    np.testing.assert_allclose(a.targets, frame_to_arrays(frame, schema).targets)


def test_missing_column(tiny_cohort, frame):
    _, schema = tiny_cohort
    with pytest.raises(InputError, match="missing column 'albumin'"):
        frame_to_arrays(frame.drop(columns=["albumin"]), schema)


def test_non_numeric_value_names_column_and_row(tiny_cohort, frame):
    _, schema = tiny_cohort
    bad = frame.copy()
    bad["creatinine"] = bad["creatinine"].astype(object)
    bad.loc[5, "creatinine"] = "high"
    bad.loc[9, "creatinine"] = "low"
    with pytest.raises(InputError, match=r"column 'creatinine': non-numeric value 'high' at row 5"):
        frame_to_arrays(bad, schema)


def test_nan_target_names_row(tiny_cohort, frame):
    _, schema = tiny_cohort
    bad = frame.copy()
    bad.loc[7, "age"] = np.nan
    with pytest.raises(InputError, match=r"column 'age': target is NaN at row 7"):
        frame_to_arrays(bad, schema)
    # predicting needs no target at all
    arrays = frame_to_arrays(frame.drop(columns=["age"]), schema, require_target=False)
    assert np.isnan(arrays.targets).all()


def test_infinite_cells_are_rejected_naming_column_and_file_row(tiny_cohort, frame):
    """NaN is the missing marker; ±inf in a feature, target or time cell is an error naming
    the column and the file's row (rows are named in file order, before sorting by subject)."""
    _, schema = tiny_cohort
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    for col, value in (("creatinine", np.inf), ("age", -np.inf), ("years_since_baseline", np.inf),
                       ("creatinine", 1e39)):
        if col not in shuffled:
            continue
        bad = shuffled.astype({col: np.float64})
        bad.loc[11, col] = value
        what = "infinite" if np.isinf(value) else r"out-of-range \(beyond float32\)"
        text = re.escape(format(value, "g"))
        with pytest.raises(InputError, match=rf"column '{col}': {what} value {text} at row 11; leave a missing"):
            frame_to_arrays(bad, schema)
    as_text = shuffled.astype({"creatinine": object})
    as_text.loc[4, "creatinine"] = "inf"
    with pytest.raises(InputError, match=r"column 'creatinine': infinite value inf at row 4"):
        frame_to_arrays(as_text, schema)
    # arrays built in a library call are checked too, naming the field and the subject
    arrays = frame_to_arrays(frame, schema)
    arrays.values["clinical"][3, 0, 2] = np.inf
    with pytest.raises(InputError, match=r"CohortArrays.values\['clinical'\]: infinite value at index \(3, 0, 2\) "
                                         rf"\(subject '{arrays.subject_ids[3]}'\)"):
        Preprocessor.fit(arrays)


def test_training_data_checks_name_the_column(tiny_cohort, frame):
    _, schema = tiny_cohort
    check_trainable(frame_to_arrays(frame, schema), schema)  # the generated cohort passes
    empty = frame.assign(albumin=np.nan)
    with pytest.raises(InputError, match=r"column 'albumin' \(clinical\) has no value in any row"):
        check_trainable(frame_to_arrays(empty, schema), schema)
    cat = schema.categorical_columns[0]
    with pytest.raises(InputError, match=rf"column '{cat}' \(lifestyle\) has no value in any row"):
        check_trainable(frame_to_arrays(frame.assign(**{cat: np.nan}), schema), schema)
    with pytest.raises(InputError, match=r"column 'age' has the single value 60 in every row"):
        check_trainable(frame_to_arrays(frame.assign(age=60.0), schema), schema)
    if schema.outcome:
        with pytest.raises(InputError, match=rf"column '{schema.outcome}': the outcome is binary; found the value 2"):
            labels = np.where(np.arange(len(frame)) % 2, 2.0, 0.0)
            check_trainable(frame_to_arrays(frame.assign(**{schema.outcome: labels}), schema), schema)
        constant = frame_to_arrays(frame.assign(**{schema.outcome: 0.0}), schema)
        with pytest.raises(InputError, match=rf"column '{schema.outcome}' has the single value 0"):
            check_trainable(constant, schema)
        check_trainable(constant, schema, outcome=False)  # no classification head: the outcome is not learned


def test_duplicate_visit_names_subject_and_row(tiny_cohort, frame):
    _, schema = tiny_cohort
    bad = pd.concat([frame, frame.iloc[[3]]], ignore_index=True)
    sid = frame["subject_id"].iloc[3]
    with pytest.raises(InputError, match=f"subject '{sid}' has visit .* twice \\(second at row {len(frame)}\\)"):
        frame_to_arrays(bad, schema)


def test_schema_errors():
    with pytest.raises(InputError, match="unknown key 'colums'"):
        Schema.from_dict({"subject_id": "eid", "colums": [], "modalities": {"clinical": ["a"]}})
    with pytest.raises(InputError, match="modalities.blood: unknown modality"):
        Schema.from_dict({"subject_id": "eid", "modalities": {"blood": ["a"]}})
    with pytest.raises(InputError, match="categorical.smoke: level 'never' is not a number"):
        Schema.from_dict({"subject_id": "eid", "modalities": {"lifestyle": ["smoke"]},
                          "categorical": {"smoke": ["never", "current"]}})
    with pytest.raises(InputError, match="'subject_id'"):
        Schema.from_dict({"modalities": {"clinical": ["a"]}})
    with pytest.raises(InputError, match="'categorical' must map each categorical lifestyle column to its levels"):
        Schema.from_dict({"subject_id": "eid", "modalities": {"lifestyle": ["smoke"]}, "categorical": ["smoke"]})
    with pytest.raises(InputError, match="subject_level: 'genetic' is not a modality of the schema"):
        Schema.from_dict({"subject_id": "eid", "modalities": {"clinical": ["a"]}, "subject_level": ["genetic"]})
    with pytest.raises(InputError, match="'subject_level' must be a list of modalities"):
        Schema.from_dict({"subject_id": "eid", "modalities": {"clinical": ["a"]}, "subject_level": "clinical"})


def test_a_subject_level_column_must_hold_one_value_per_subject(tiny_cohort, frame):
    _, schema = tiny_cohort
    assert schema.subject_level == ("genetic",)  # the generated cohort's genotypes
    column = schema.modalities["genetic"][0]
    arrays = frame_to_arrays(frame, schema)  # repeated at each visit: accepted
    assert arrays.values["genetic"].shape[1] > 1
    bad = frame.copy()
    row = int(np.flatnonzero((bad["visit"] == 1).to_numpy() & bad[column].notna().to_numpy())[0])
    bad.loc[row, column] = bad.loc[row, column] + 1.0
    sid = bad["subject_id"].iloc[row]
    with pytest.raises(InputError, match=f"column '{re.escape(column)}' \\(genetic\\) is subject_level in the schema, "
                                         f"but subject '{sid}' has different values at different visits"):
        frame_to_arrays(bad, schema)
    bad.loc[row, column] = np.nan  # missing at a visit is fine
    frame_to_arrays(bad, schema)


def test_the_sidecar_schema_keeps_every_dot_but_the_extension():
    assert sidecar_path("runs/cohort.parquet").name == "cohort.schema.yaml"
    assert sidecar_path("/d/my.data.csv").name == "my.data.schema.yaml"
    assert sidecar_path("v1.2.cohort.npz").name == "v1.2.cohort.schema.yaml"


def test_ukb_example_schema_loads_a_ukb_style_file():
    from importlib.resources import files

    schema = Schema.load(files("hamnet_jax.data") / "ukb_example_schema.yaml")
    cols = [schema.subject_id, schema.visit, schema.time, schema.target]
    cols += [c for m in schema.modalities.values() for c in m]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({c: rng.normal(size=12) for c in cols})
    frame[schema.subject_id] = np.repeat(np.arange(4), 3)
    frame[schema.visit] = np.tile([0, 1, 2], 4)
    frame[schema.time] = np.tile([0.0, 2.5, 5.0], 4)
    for c, levels in schema.categorical.items():
        frame[c] = rng.choice(levels, size=12)
    for c in schema.modalities["genetic"]:  # one polygenic score per participant (subject_level)
        frame[c] = np.repeat(rng.normal(size=4), 3)
    a = frame_to_arrays(frame, schema)
    assert a.num_subjects == 4 and a.visit_mask.shape == (4, 3) and schema.subject_level == ("genetic",)
    assert "30000-0.0" in schema.modalities["clinical"]


def test_split_is_deterministic_disjoint_and_order_free():
    ids = np.array([f"S{i}" for i in range(2000)])
    a = split_subjects(ids, seed=3)
    b = split_subjects(ids[::-1], seed=3)
    assert sorted(ids[a["test"]]) == sorted(ids[::-1][b["test"]])
    all_idx = np.concatenate(list(a.values()))
    assert len(all_idx) == len(set(all_idx)) == len(ids)
    assert abs(len(a["train"]) / len(ids) - 0.7) < 0.04


def test_preprocessor_uses_training_split_only_and_roundtrips(tiny_cohort, frame, tmp_path):
    _, schema = tiny_cohort
    a = frame_to_arrays(frame, schema)
    idx = split_subjects(a.subject_ids)
    train = a.subset(idx["train"])
    pre = Preprocessor.fit(train, [schema.categorical[c] for c in schema.categorical_columns])
    x = train.values["clinical"][train.visit_mask > 0]
    np.testing.assert_allclose(pre.means["clinical"], np.nanmean(x, axis=0), rtol=1e-5)
    assert pre.target_mean == pytest.approx(float(train.targets.mean()), rel=1e-6)
    pre.save(tmp_path / "p.npz")
    back = Preprocessor.load(tmp_path / "p.npz")
    b1, b2 = pre.transform(a), back.transform(a)
    np.testing.assert_array_equal(b1.inputs["imaging"], b2.inputs["imaging"])
    np.testing.assert_array_equal(b1.categorical, b2.categorical)
    assert b1.categorical.max() <= max(len(v) for v in schema.categorical.values())
