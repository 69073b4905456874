import numpy as np
import pandas as pd
import pytest

from hamnet_jax.cohort.default import CohortDims, generate_cohort
from hamnet_jax.data.schema import Schema

DIMS = CohortDims(clinical=50, imaging=100, genetic=30, lifestyle_numeric=20)


def test_same_seed_same_data_and_other_seed_differs():
    a, sa = generate_cohort(150, seed=7, dims=DIMS)
    b, sb = generate_cohort(150, seed=7, dims=DIMS)
    c, _ = generate_cohort(150, seed=8, dims=DIMS)
    pd.testing.assert_frame_equal(a, b)
    assert sa == sb
    assert not np.allclose(a["age"].to_numpy()[:50], c["age"].to_numpy()[:50])


def test_structure_names_and_missingness():
    frame, raw = generate_cohort(1000, seed=1, dims=DIMS)
    schema = Schema.from_dict(raw)
    for col in ("subject_id", "visit", "age", "bio_age", "died", "albumin", "c_reactive_protein",
                "smoking_status", "prs_longevity"):
        assert col in frame.columns
    visits = frame.groupby("subject_id")["visit"].count()
    assert visits.min() == 1 and visits.max() == 4
    # age increases across a subject's visits
    assert (frame.groupby("subject_id")["age"].diff().dropna() > 0).all()
    imaging = frame[list(schema.modalities["imaging"])].notna().any(axis=1)
    assert 0.1 < imaging.mean() < 0.4  # imaging absent for most visits
    clinical_missing = frame[list(schema.modalities["clinical"])].isna().to_numpy().mean()
    assert 0.03 < clinical_missing < 0.3
    # every visit measures at least one modality
    observed = np.zeros(len(frame), bool)
    for cols in schema.modalities.values():
        observed |= frame[list(cols)].notna().any(axis=1).to_numpy()
    assert observed.all()
    assert set(frame["died"].unique()) <= {0, 1} and 0.05 < frame["died"].mean() < 0.5


def test_latent_is_recoverable_signal():
    frame, _ = generate_cohort(2000, seed=2, dims=DIMS)
    gap = frame["bio_age"] - frame["age"]
    assert 2.0 < gap.std() < 8.0
    # a single marker tracks biological age more closely than chronological age on the residual
    last = frame.groupby("subject_id").tail(1)
    died = last["died"].to_numpy()
    assert last["bio_age"][died == 1].mean() > last["bio_age"][died == 0].mean() + 3


def test_the_frailty_generator_is_another_world_with_the_same_layout(tmp_path):
    from hamnet_jax.cli import main
    from hamnet_jax.data.arrays import frame_to_arrays
    from hamnet_jax.cohort.frailty import generate_frailty_cohort

    dims = CohortDims(clinical=12, imaging=16, genetic=30, lifestyle_numeric=4)
    a, schema = generate_frailty_cohort(800, seed=1, dims=dims)
    b, _ = generate_frailty_cohort(800, seed=1, dims=dims)
    pd.testing.assert_frame_equal(a, b)
    default, default_schema = generate_cohort(50, seed=1, dims=dims)
    assert list(a.columns) == list(default.columns) and schema == default_schema
    assert set(a.groupby("subject_id").size()) == {1, 2}  # fewer visits than the default world
    arrays = frame_to_arrays(a, Schema.from_dict(schema))
    assert set(np.unique(arrays.labels)) == {0.0, 1.0}
    # missing not at random: imaging is measured more often in the biologically younger
    gap = a["bio_age"] - a["age"]
    imaged = a[schema["modalities"]["imaging"]].notna().any(axis=1)
    assert a["bio_age"][imaged].mean() < a["bio_age"][~imaged].mean() - 3
    assert np.corrcoef(gap, a["age"])[0, 1] < 0.2
    out = tmp_path / "frailty.csv"
    assert main(["cohort", "--generator", "frailty", "--subjects", "30", "--out", str(out), "--clinical-dim", "12",
                 "--imaging-dim", "16", "--genetic-dim", "30", "--lifestyle-numeric-dim", "4"]) == 0
    assert pd.read_csv(out)["subject_id"].nunique() == 30 and (tmp_path / "frailty.schema.yaml").exists()


def test_the_interaction_world_shows_a_carriers_smoking_in_the_markers():
    """Gene x environment: a carrier's smoking makes the informative markers look older at
    the same biological age, a non-carrier's does not move them; same layout as the others."""
    from hamnet_jax.cohort.interactions import INFORMATIVE, _prs_count, _world, generate_interactions_cohort

    dims = CohortDims(clinical=30, imaging=16, genetic=30, lifestyle_numeric=4)
    frame, schema = generate_interactions_cohort(4000, seed=4, dims=dims)
    again, _ = generate_interactions_cohort(4000, seed=4, dims=dims)
    pd.testing.assert_frame_equal(frame, again)
    default, default_schema = generate_cohort(50, seed=1, dims=dims)
    assert list(frame.columns) == list(default.columns) and schema == default_schema
    assert set(frame.groupby("subject_id").size()) == {1, 2, 3}
    world, first = _world(dims), frame.groupby("subject_id").head(1)
    variant = schema["modalities"]["genetic"][_prs_count(dims) + int(world["snp_gxe"])]
    markers = schema["modalities"]["clinical"][:INFORMATIVE]  # older reads higher after the sign
    center, sign = world["clin_center"][:INFORMATIVE], np.sign(world["clin_effect"][:INFORMATIVE])
    reading = np.nanmean((first[markers].to_numpy() / center - 1) * 10 * sign, axis=1)
    band = ((first["bio_age"] > 50) & (first["bio_age"] < 70)).to_numpy()
    carrier, smoker = (first[variant] >= 1).to_numpy(), (first["smoking_status"] == 2).to_numpy()
    shift = {c: reading[band & (carrier == c) & smoker].mean() - reading[band & (carrier == c) & ~smoker].mean()
             for c in (True, False)}
    assert shift[True] > 0.4 and abs(shift[False]) < 0.15, shift
    gap = (first["bio_age"] - first["age"]).to_numpy()  # nobody is older for it
    assert abs(gap[carrier & smoker].mean() - gap[carrier & ~smoker].mean()) < 0.6


@pytest.mark.parametrize("generator", ["hamnet", "frailty", "interactions"])
def test_a_cohort_drawn_in_blocks_starts_with_the_one_block_cohort(generator):
    from hamnet_jax.cohort.file import GENERATORS

    blocks_of = GENERATORS[generator]
    dims = CohortDims(clinical=6, imaging=8, genetic=12, lifestyle_numeric=2)
    parts = list(blocks_of(250, 2, dims, block=100))
    assert [p[0]["subject_id"].nunique() for p in parts] == [100, 100, 50]
    whole = pd.concat([p[0] for p in parts], ignore_index=True)
    assert whole["subject_id"].nunique() == 250
    pd.testing.assert_frame_equal(parts[0][0], next(blocks_of(100, 2, dims, block=100))[0])
    assert not parts[1][0][parts[0][1]["target"]].equals(parts[0][0][parts[0][1]["target"]])  # new draws
