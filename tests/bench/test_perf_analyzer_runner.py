"""The perf_analyzer runner's own logic, against a stand-in binary that answers as
perf_analyzer does (the real one is exercised in tests/serving/test_perf_analyzer.py where
it is installed): the input-data file, the command line, the CSV report, and the wider
stability band after an unstable measurement."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from hamnet_jax.bench.perf_analyzer import perf_analyzer_env, run_perf_analyzer, write_input_data

STAND_IN = """#!{python}
import sys
args = sys.argv[1:]
open({log!r}, "a").write(" ".join(args) + "\\n")
stability = int(args[args.index("--stability-percentage") + 1])
if stability < {settles_at}:
    print("Failed to obtain stable measurement within 10 measurement windows for concurrency 1.")
    sys.exit(2)
with open(args[args.index("-f") + 1], "w") as f:
    f.write("Concurrency,Inferences/Second,Client Send,p50 latency,p90 latency,p95 latency,p99 latency,Avg latency\\n")
    f.write("32,1650.5,12,18950,25000,28280,31500,19500\\n")
"""


def stand_in(tmp_path: Path, settles_at: int) -> tuple[str, Path]:
    log = tmp_path / "calls.log"
    binary = tmp_path / "perf_analyzer"
    binary.write_text(STAND_IN.format(python=sys.executable, log=str(log), settles_at=settles_at))
    binary.chmod(0o755)
    return str(binary), log


def test_input_data_is_one_subject_per_entry_in_base64_float32_with_nan_kept(tmp_path):
    requests = [{"clinical": np.array([[[1.5, np.nan]]], np.float32), "visit_times": np.zeros((1, 1))}]
    data = json.loads(write_input_data(requests, tmp_path / "in.json").read_text())["data"]
    clinical = np.frombuffer(base64.b64decode(data[0]["clinical"]["b64"]), "<f4")
    assert clinical[0] == 1.5 and np.isnan(clinical[1]) and clinical.size == 2  # no batch dimension
    with pytest.raises(ValueError, match="one subject per request, got shape"):
        write_input_data([{"clinical": np.zeros((2, 1, 2))}], tmp_path / "two.json")


def test_the_report_is_read_in_ms_and_an_unstable_measurement_widens_the_band(tmp_path):
    binary, log = stand_in(tmp_path, settles_at=25)
    row = run_perf_analyzer(binary, "127.0.0.1:1", "hamnet", 32, tmp_path / "in.json", tmp_path / "r.csv", 3000)
    assert row["throughput"] == 1650.5 and row["p50_ms"] == 18.95 and row["p95_ms"] == 28.28
    assert row["stability_percentage"] == 25 and row["concurrency"] == 32
    calls = log.read_text().splitlines()
    assert len(calls) == 2 and "--concurrency-range 32:32" in calls[0] and "-p 3000" in calls[0]
    assert "-b 1" in calls[0] and "-i grpc" in calls[0]


def test_a_failure_other_than_instability_is_raised_with_its_output(tmp_path):
    binary, _ = stand_in(tmp_path, settles_at=1000)  # never settles: the widest band fails too
    with pytest.raises(RuntimeError, match="perf_analyzer failed .*stable measurement"):
        run_perf_analyzer(binary, "127.0.0.1:1", "hamnet", 1, tmp_path / "in.json", tmp_path / "r.csv")


def test_the_cuda_runtime_libraries_of_the_binarys_environment_go_on_the_library_path(tmp_path):
    libs = tmp_path / "lib" / "python3.11" / "site-packages" / "nvidia" / "cuda_runtime" / "lib"
    libs.mkdir(parents=True)
    (tmp_path / "bin").mkdir()
    env = perf_analyzer_env(str(tmp_path / "bin" / "perf_analyzer"))
    assert env["LD_LIBRARY_PATH"].split(os.pathsep)[0] == str(libs)
