import json
import math

from hamnet_jax.io_atomic import write_json_atomic


def test_json_is_strict_and_replaced_whole(tmp_path):
    path = tmp_path / "out.json"
    path.write_text('{"old": true}')
    write_json_atomic(path, {"mae": 1.5, "coverage_90": math.nan, "rows": [math.inf, 2.0]})
    assert json.loads(path.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c))) == {
        "mae": 1.5, "coverage_90": None, "rows": [None, 2.0]}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left behind
