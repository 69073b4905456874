"""`--resume` continues only the job it names: another data file (by content, whatever its
name), schema or config is exit 2 naming what differs, and the run is left as it was;
settings meant to change on resume (more epochs) are allowed."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

from hamnet_jax.cli import main
from hamnet_jax.data.tables import write_table
from hamnet_jax.errors import InputError
from hamnet_jax.job_dir import JOB_FILE, check_resume

from ..conftest import TINY_CONFIG


@pytest.fixture
def resumable(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    return run


def _other_data(tiny_cohort, tmp_path, name="tiny.parquet"):
    """The tiny cohort with one value changed, under the same file name elsewhere."""
    data, _ = tiny_cohort
    frame = pd.read_parquet(data)
    column = [c for c in frame.columns if frame[c].dtype.kind == "f"][-1]
    frame.loc[frame.index[0], column] = frame[column].iloc[0] + 1.0
    other = tmp_path / "other" / name
    other.parent.mkdir()
    write_table(frame, other)
    shutil.copy(data.with_name("tiny.schema.yaml"), other.with_name("tiny.schema.yaml"))
    return other


def test_train_resume_with_other_data_is_refused(resumable, tiny_cohort, tmp_path, capsys):
    recorded = (resumable / JOB_FILE).read_text()
    other = _other_data(tiny_cohort, tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    code = main(["train", "--data", str(other), "--config", str(tmp_path / "c.yaml"), "--out", str(resumable),
                 "--resume", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "was trained with other data.sha256" in err
    assert (resumable / JOB_FILE).read_text() == recorded  # the run is left as it was


def test_train_resume_with_another_schema_or_config_names_them(resumable, tiny_cohort, tmp_path, capsys):
    data, _ = tiny_cohort
    schema = yaml.safe_load(data.with_name("tiny.schema.yaml").read_text())
    del schema["outcome"]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(schema))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    (tmp_path / "seed.yaml").write_text(yaml.safe_dump({**TINY_CONFIG, "training": {**TINY_CONFIG["training"],
                                                                                    "seed": 7}}))
    train = ["train", "--data", str(data), "--out", str(resumable), "--resume", "--quiet"]
    assert main([*train, "--config", str(tmp_path / "c.yaml"), "--schema", str(tmp_path / "s.yaml")]) == 2
    assert "was trained with other schema.outcome" in capsys.readouterr().err
    assert main([*train, "--config", str(tmp_path / "seed.yaml")]) == 2
    assert "was trained with other config.training.seed (the run's job.json)" in capsys.readouterr().err


def test_resumable_settings_may_change_and_the_record_follows(tmp_path):
    identity = {"data": {"sha256": "a"}, "config": {"training": {"num_epochs": 4, "seed": 0}, "general": {"x": 1}}}
    check_resume(tmp_path, identity, resume=False)
    more = {"data": {"sha256": "a"}, "config": {"training": {"num_epochs": 9, "seed": 0}, "general": {"x": 2}}}
    check_resume(tmp_path, more, resume=True)
    assert json.loads((tmp_path / JOB_FILE).read_text())["config"]["training"]["num_epochs"] == 9
    with pytest.raises(InputError, match=r"other config\.training\.seed, data\.sha256 \(the run's job\.json\)"):
        check_resume(tmp_path, {"data": {"sha256": "b"}, "config": {"training": {"num_epochs": 9, "seed": 1},
                                                                    "general": {"x": 2}}}, resume=True)


def test_a_finished_run_is_reused_only_when_trained_from_the_same_data_and_config(resumable, tiny_cohort, tmp_path):
    from hamnet_jax.config import config_from_dict
    from hamnet_jax.runs.train import reusable_run

    data, schema = tiny_cohort
    assert reusable_run(resumable, data, schema, config_from_dict(TINY_CONFIG))
    assert not reusable_run(tmp_path / "empty", data, schema, config_from_dict(TINY_CONFIG))
    other_config = {**TINY_CONFIG, "training": {**TINY_CONFIG.get("training", {}), "learning_rate": 0.123}}
    with pytest.raises(InputError, match="config.training.learning_rate"):
        reusable_run(resumable, data, schema, config_from_dict(other_config))
    with pytest.raises(InputError, match="data"):
        reusable_run(resumable, _other_data(tiny_cohort, tmp_path), schema, config_from_dict(TINY_CONFIG))


def test_a_run_recorded_before_a_later_key_existed_is_still_reused_at_its_old_meaning(resumable, tiny_cohort):
    """`training.weight_average_epochs` came after runs were recorded: at 0 (what those runs did)
    it stays out of the identity, so they are reused; set, it is a different job."""
    from hamnet_jax.config import config_from_dict
    from hamnet_jax.runs.train import reusable_run

    data, schema = tiny_cohort
    job = json.loads((resumable / JOB_FILE).read_text())
    assert "weight_average_epochs" not in job["config"]["training"]  # as a run made before the key records it
    assert reusable_run(resumable, data, schema, config_from_dict(TINY_CONFIG))
    averaged = {**TINY_CONFIG, "training": {**TINY_CONFIG.get("training", {}), "weight_average_epochs": 1.5}}
    with pytest.raises(InputError, match="config.training.weight_average_epochs"):
        reusable_run(resumable, data, schema, config_from_dict(averaged))
