import json
import os
import math

from hamnet_jax.io_atomic import AppendLog, write_json_atomic


def test_json_is_strict_and_replaced_whole(tmp_path):
    path = tmp_path / "out.json"
    path.write_text('{"old": true}')
    write_json_atomic(path, {"mae": 1.5, "coverage_90": math.nan, "rows": [math.inf, 2.0]})
    assert json.loads(path.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c))) == {
        "mae": 1.5, "coverage_90": None, "rows": [None, 2.0]}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left behind


def test_a_torn_tail_is_cut_before_the_next_append(tmp_path, caplog):
    log = AppendLog(tmp_path / "events.jsonl")
    log.append({"n": 1})
    with open(log.path, "a") as f:
        f.write('{"n": 2, "half')  # a crash mid-append
    assert log.read() == [{"n": 1}] and log.skipped == [2]
    log.append({"n": 3})
    log.append({"n": 4})
    assert log.read() == [{"n": 1}, {"n": 3}, {"n": 4}] and log.skipped == []
    assert "cut a torn last line of 14 bytes" in caplog.text


def test_a_whole_event_missing_only_its_newline_is_kept(tmp_path):
    log = AppendLog(tmp_path / "events.jsonl")
    log.path.write_text('{"n": 1}\n{"n": 2}')
    log.append({"n": 3})
    assert log.read() == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_an_unreadable_line_mid_file_is_skipped_and_reported(tmp_path, caplog):
    log = AppendLog(tmp_path / "events.jsonl")
    log.path.write_text('{"n": 1}\n{"n": 2, "to\n[1, 2]\n{"n": 4}\n')  # a torn line; a non-object
    assert log.read() == [{"n": 1}, {"n": 4}] and log.skipped == [2, 3]
    assert "skipped 2 unreadable line(s) (line 2, 3); the other 2 event(s) are read" in caplog.text


def test_a_torn_tail_longer_than_the_scan_is_cut_whole(tmp_path, monkeypatch):
    import hamnet_jax.io_atomic as io_atomic

    monkeypatch.setattr(io_atomic, "TAIL_SCAN", 4)
    log = AppendLog(tmp_path / "events.jsonl")
    log.path.write_text('{"n": 1}\n{"n": 2, "a long torn line"')
    log.append({"n": 3})
    assert log.path.read_text() == '{"n": 1}\n{"n": 3}\n'


def test_a_directory_owned_by_a_live_process_is_refused_to_a_second(tmp_path):
    import subprocess
    import sys

    import pytest

    from hamnet_jax.errors import InputError
    from hamnet_jax.file_lock import owned

    with owned(tmp_path, "study"):
        code = ("import sys; from hamnet_jax.file_lock import owned\n"
                "try:\n    owned(__import__('pathlib').Path(sys.argv[1]), 'study').__enter__()\n"
                "except Exception as e:\n    print(e)")
        other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
        assert f"another process (pid {os.getpid()}) is running this study" in other.stdout
        with pytest.raises(InputError, match="is running this study"):  # (flock: per open file, this process too)
            with owned(tmp_path, "study"):
                pass
    with owned(tmp_path, "study"):  # released when the first owner ends
        pass
