"""An output over an input is exit 2 with the input unchanged: the same path, a hard link, a
symlink, a run directory given back as the output."""

from __future__ import annotations

import hashlib
import os

import pytest

from hamnet_jax.cli import main


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("alias", ["same", "hardlink", "symlink"])
def test_predict_refuses_to_write_over_its_data(tiny_run, tiny_cohort, tmp_path, capsys, alias):
    data, _ = tiny_cohort
    before = digest(data)
    out = {"same": data, "hardlink": tmp_path / "link.parquet", "symlink": tmp_path / "sym.parquet"}[alias]
    if alias == "hardlink":
        os.link(data, out)
    elif alias == "symlink":
        out.symlink_to(data)
    assert main(["predict", "--run", str(tiny_run), "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} is the same file as --data {data}" in err and "replace the input" in err
    assert digest(data) == before


def test_a_compression_refuses_its_source_run_as_output(tiny_run, tiny_cohort, capsys):
    data, _ = tiny_cohort
    listing = sorted(p.name for p in tiny_run.iterdir())
    assert main(["prune", "--run", str(tiny_run), "--data", str(data), "--out", str(tiny_run)]) == 2
    assert f"--out {tiny_run} is the same file as --run {tiny_run}" in capsys.readouterr().err
    assert sorted(p.name for p in tiny_run.iterdir()) == listing
