"""Serving benchmark: the gRPC service under closed-loop load, fuzzing, and ONNX Runtime alone.

    python experiments/bench_serving.py [--work runs/main] [--duration 10] [--fuzz 10000]
                                        [--out experiments/results/bench_serving.json]

Needs the standard-tier run `<work>/fp32` and its distilled student `<work>/student-0.25`
(see experiments/bench_inference.py); their raw-input ONNX exports are taken from
`<work>/bench_inference/` (written by bench_inference.py) or exported here.

A model repository is built in a temporary directory: the standard tier at fp32 (the
must-hold), and the compressed models (dynamic int8, the 0.25x student at fp32 and
dynamic int8) as further models, all with the onnxruntime backend, one intra-op thread,
batch size 32, dynamic batching without a queue delay. `hamnet serve` runs it as its own
process (access log on, as deployed). Every model is driven at each level by the
project's load generator (client/loadtest.py, in this process) and, where it is present
(`HAMNET_PERF_ANALYZER` or PATH; hamnet_jax/bench/perf_analyzer.py), by Triton's
perf_analyzer (one subject per request), both on the same 2 cores. For each model, the
same run first times ONNX Runtime alone on the same graph (batch 1 latency, batch 32
throughput, one thread): the service's fraction of that ceiling is reported. Then 10,000
malformed requests (client/fuzz.py): every one must get an error status, the server must
stay up, and its resident memory is read after each half.

With `--mlserver PATH` (the `mlserver` command of a separate environment: `python3.11 -m
venv .mlserver && .mlserver/bin/pip install mlserver==1.7.1 onnxruntime`), MLServer serves
the same standard-tier graph in the same run (experiments/baselines/mlserver_onnx_runtime.py,
`parallel_workers: 0`: 1.7.1's worker pool fails to start its event loop on Python 3.11
here), twice: adaptive batching off (its default) and on (`max_batch_size` 32,
`max_batch_time` 2 ms). All three servers stay up, and at each level the project's load
generator alternates between them for 3 rounds (this machine's speed drifts by tens of
percent within minutes): the ratios of the medians. perf_analyzer cannot drive MLServer:
it calls Triton's ModelConfig RPC first, which MLServer 1.7.1 does not implement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from hamnet_jax.bench.hardware import process_cpu_seconds  # noqa: E402
from hamnet_jax.bench.memory import host_rss_bytes  # noqa: E402
from hamnet_jax.bench.perf_analyzer import perf_analyzer_binary, run_perf_analyzer, write_input_data  # noqa: E402
from hamnet_jax.client.service_process import serve_process  # noqa: E402
from hamnet_jax.repository.layout import add_to_repository  # noqa: E402
from hamnet_jax.evaluation.timing import request_latency  # noqa: E402
from hamnet_jax.export.onnx_export import export_run_onnx  # noqa: E402
from hamnet_jax.inference.predictors import OnnxPredictor  # noqa: E402
from hamnet_jax.inference.raw_inputs import random_raw  # noqa: E402
from hamnet_jax.inference.raw_model import RawModel  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.runs.run_dir import load_run  # noqa: E402
from hamnet_jax.client.fuzz import malformed_requests  # noqa: E402
from hamnet_jax.client.loadtest import format_table, run_level, serialized, statuses  # noqa: E402

# served model -> (run under --work, export precision)
MODELS = {"standard-fp32": ("fp32", "fp32"), "standard-int8-dynamic": ("fp32", "int8-dynamic"),
          "student-fp32": ("student-0.25", "fp32"), "student-int8-dynamic": ("student-0.25", "int8-dynamic")}
EXPORT_NAMES = {"fp32": "standard", "student-0.25": "student"}
MAIN = "standard-fp32"
BATCH = 32
ROUNDS = 3  # alternating rounds per level of the MLServer comparison
HAMNET, MLSERVER, MLSERVER_BATCHED = "hamnet-serve", "mlserver", "mlserver-batching"
MLSERVER_BATCHING = {"max_batch_size": 32, "max_batch_time": 0.002}  # MLServer's adaptive batching: 32 / 2 ms
TARGETS = {"throughput_32": 2000.0, "p95_ms_32": 30.0, "p50_ms_1": 1.2, "throughput_ratio_to_mlserver_batching_32": 4.0}


def build_repository(work: Path, root: Path) -> dict[str, Path]:
    """<root>/<model>/1/: the run's files linked, `model.onnx` its export; inference.yaml."""
    graphs = {}
    for name, (run_name, precision) in MODELS.items():
        run_dir = work / run_name
        graph = work / "bench_inference" / f"{EXPORT_NAMES[run_name]}-{precision}.onnx"
        if not graph.exists():
            export_run_onnx(RawModel.from_run(load_run(run_dir), 0), graph, precision)
        options = {"backend": "onnxruntime", "precision_mode": precision, "batch_size": BATCH,
                   "dynamic_batching": True, "max_queue_delay_us": 0, "intra_op_threads": 1,
                   "inter_op_threads": 1, "mc_samples": 0}
        add_to_repository(root, name, run_dir, graph, options)
        graphs[name] = graph
    return graphs


def ceiling(graph: Path, raw: RawModel) -> dict[str, float]:
    """ONNX Runtime alone on one thread, batch sizes fixed as the server runs them."""
    predictor = OnnxPredictor(graph, raw.spec, 1, 1, max_batch=BATCH, buckets=(1, BATCH))
    request = random_raw(raw.spec, raw.preprocessor, BATCH, seed=1)
    p50_1 = request_latency(predictor, request, 1, reps=300).p50
    p50_32 = request_latency(predictor, request, BATCH, reps=60).p50
    return {"ort_p50_ms_b1": p50_1, "ort_p50_ms_b32": p50_32, "ort_throughput_b32": BATCH / p50_32 * 1e3}


def start_mlserver(command: str, graph: Path, root: Path, log: Path, batching: bool = False
                   ) -> tuple[subprocess.Popen, str]:
    """MLServer serving `graph` as model MAIN over gRPC on a free port, once it is ready;
    `batching`: its adaptive batching on (`MLSERVER_BATCHING`), else off (its default)."""
    import shutil
    import socket

    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    (root / MAIN).mkdir(parents=True)
    shutil.copy(ROOT / "experiments" / "baselines" / "mlserver_onnx_runtime.py", root)
    (root / "settings.json").write_text(json.dumps({"grpc_port": ports[0], "http_port": ports[1], "host": "127.0.0.1",
                                                    "metrics_port": ports[2], "parallel_workers": 0}))
    (root / MAIN / "model-settings.json").write_text(json.dumps({
        "name": MAIN, "implementation": "mlserver_onnx_runtime.OnnxRuntimeModel",
        "parameters": {"uri": str(graph.resolve())}, **(MLSERVER_BATCHING if batching else {})}))
    process = subprocess.Popen([command, "start", str(root)], cwd=root, stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    url = f"127.0.0.1:{ports[0]}"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        channel = grpc.insecure_channel(url)
        try:
            ready = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelReady(
                service_pb2.ModelReadyRequest(name=MAIN), timeout=2).ready
        except grpc.RpcError:
            ready = False
        finally:
            channel.close()
        if ready:
            return process, url
        time.sleep(1)
    process.kill()
    raise RuntimeError(f"MLServer did not become ready; see {log}:\n{log.read_text()[-2000:]}")


class LoadGenerator:
    """One concurrency level against a served model: Triton's perf_analyzer when present
    (hamnet_jax/bench/perf_analyzer.py), else the project's load generator (client/loadtest.py)."""

    def __init__(self, binary: str | None, raw: RawModel, tmp: Path, duration: float, window_ms: int) -> None:
        requests = [random_raw(raw.spec, raw.preprocessor, 1, seed=s) for s in range(256)]
        self.binary, self.tmp, self.duration, self.window_ms, self.count = binary, tmp, duration, window_ms, 0
        self.input_data = write_input_data(requests[:16], tmp / "perf_analyzer_requests.json") if binary else None
        self.requests = requests

    @property
    def tool(self) -> str:
        return "perf_analyzer" if self.binary else "loadtest"

    def level(self, url: str, model: str, concurrency: int, tool: str | None = None) -> dict:
        if (tool or self.tool) == "perf_analyzer":
            self.count += 1
            return run_perf_analyzer(self.binary, url, model, concurrency, self.input_data,
                                     self.tmp / f"perf_analyzer_{self.count}.csv", self.window_ms)
        return {**run_level(url, serialized(model, self.requests), concurrency, self.duration), "tool": "loadtest"}


def compare(servers: dict[str, str], load: LoadGenerator, levels: list[int]) -> list[dict]:
    """hamnet serve and MLServer (adaptive batching off and on) on the same graph,
    alternating `ROUNDS` times per level (this machine's speed drifts by tens of percent
    within minutes): the median of each side's rounds, and hamnet serve's ratio to each.
    Driven by the project's load generator: perf_analyzer cannot drive MLServer (it calls
    Triton's ModelConfig RPC first, which MLServer 1.7.1 does not implement: "failed to get
    model config: Method not found")."""
    out = []
    for level in levels:
        rounds: dict[str, list[dict]] = {name: [] for name in servers}
        for _ in range(ROUNDS):
            for name, url in servers.items():
                rounds[name].append(load.level(url, MAIN, level, "loadtest"))
        ours = float(np.median([r["throughput"] for r in rounds[HAMNET]]))
        for name, rows in rounds.items():
            median = sorted(rows, key=lambda r: r["throughput"])[ROUNDS // 2]
            out.append({**median, "model": f"{name}/{MAIN}", "served_by": name, "rounds": ROUNDS,
                        "throughputs": [r["throughput"] for r in rows],
                        "hamnet_throughput_ratio": ours / median["throughput"]})
        print(f"x{level} (loadtest): " + ", ".join(f"{name} {[round(r['throughput']) for r in rows]}"
                                                     for name, rows in rounds.items()) + " infer/s", flush=True)
    return out


def sweep_model(url: str, pid: int, name: str, load: LoadGenerator, levels: list[int]) -> list[dict]:
    """Every level with the project's load generator, and with perf_analyzer where present."""
    rows = []
    for tool in ["loadtest"] + ["perf_analyzer"] * (load.binary is not None):
        for level in levels:
            cpu = process_cpu_seconds(pid)
            row = load.level(url, name, level, tool)
            seconds = process_cpu_seconds(pid) - cpu
            if "requests" in row:
                row["server_cpu_ms_per_request"] = seconds * 1e3 / max(row["requests"], 1)
            rows.append({"model": name, **row})
            print(f"{name} x{level} ({tool}): {row['throughput']:,.0f} infer/s, p50 {row['p50_ms']:.2f} ms, "
                  f"p95 {row['p95_ms']:.2f} ms", flush=True)
    return rows


def fuzz(url: str, pid: int, raw: RawModel, count: int) -> dict:
    valid = random_raw(raw.spec, raw.preprocessor, 1, seed=0)
    cases = malformed_requests(valid, MAIN, count, seed=0)
    half = len(cases) // 2
    rss = [host_rss_bytes(pid) / 2**20]
    codes: list[str] = []
    started = time.perf_counter()
    for part in (cases[:half], cases[half:]):
        codes += statuses(url, [c[1] for c in part], concurrency=8)
        rss.append(host_rss_bytes(pid) / 2**20)
    by_code: dict[str, int] = {}
    ok_mutations = sorted({name for (name, _), code in zip(cases, codes, strict=True) if code == "OK"})
    for code in codes:
        by_code[code] = by_code.get(code, 0) + 1
    alive = statuses(url, serialized(MAIN, [valid]), concurrency=1) == ["OK"]
    return {"requests": len(cases), "seconds": time.perf_counter() - started, "status_counts": by_code,
            "answered_ok": by_code.get("OK", 0), "mutations_answered_ok": ok_mutations,
            "server_alive_after": alive and Path(f"/proc/{pid}").exists(),
            "rss_mb_before": rss[0], "rss_mb_after_half": rss[1], "rss_mb_after": rss[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="runs/main")
    parser.add_argument("--out", default="experiments/results/bench_serving.json")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per concurrency level")
    parser.add_argument("--window-ms", type=int, default=4000,
                        help="perf_analyzer's measurement window (it measures until 3 windows agree)")
    parser.add_argument("--levels", default="1,8,32,64")
    parser.add_argument("--fuzz", type=int, default=10_000, help="malformed requests")
    parser.add_argument("--models", default=",".join(MODELS), help=f"served models, of {list(MODELS)}")
    parser.add_argument("--mlserver", help="an `mlserver` command: serve the standard-tier graph with it too")
    args = parser.parse_args()
    if args.mlserver and MAIN not in args.models.split(","):
        parser.error(f"--mlserver serves {MAIN}: keep it in --models")
    work, levels = Path(args.work), [int(x) for x in args.levels.split(",")]
    names = [m for m in args.models.split(",") if m]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; expected some of {list(MODELS)}")
    raws = {name: RawModel.from_run(load_run(work / MODELS[name][0]), 0) for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repository"
        graphs = build_repository(work, root)
        for name in set(MODELS) - set(names):
            for path in sorted((root / name).rglob("*"), reverse=True):
                path.unlink() if path.is_symlink() or path.is_file() else path.rmdir()
            (root / name).rmdir()
        alone = {name: ceiling(graphs[name], raws[name]) for name in names}
        binary = perf_analyzer_binary()
        if binary is None:
            print("perf_analyzer not found (HAMNET_PERF_ANALYZER or PATH): the project's load generator only")
        loads = {}
        for name in names:
            (Path(tmp) / f"load-{name}").mkdir()
            loads[name] = LoadGenerator(binary, raws[name], Path(tmp) / f"load-{name}", args.duration,
                                        args.window_ms)
        # every server up at once (an idle one takes no CPU): MLServer is measured right
        # after the same model on hamnet serve, so machine drift between them stays small
        servers: list[subprocess.Popen] = []
        try:
            process, url = serve_process(root, Path(tmp) / "server.log")
            servers.append(process)
            peers = {HAMNET: url}
            if args.mlserver:
                for batching, name in ((False, MLSERVER), (True, MLSERVER_BATCHED)):
                    mls, peers[name] = start_mlserver(args.mlserver, graphs[MAIN], Path(tmp) / name,
                                                      Path(tmp) / f"{name}.log", batching)
                    servers.append(mls)
            order = [MAIN] * (MAIN in names) + [n for n in names if n != MAIN]
            rows = sweep_model(url, process.pid, order[0], loads[order[0]], levels)
            baseline = compare(peers, loads[MAIN], levels) if args.mlserver else []
            rows += [r for name in order[1:] for r in sweep_model(url, process.pid, name, loads[name], levels)]
            fuzzed = fuzz(url, process.pid, raws[MAIN], args.fuzz) if MAIN in names and args.fuzz else None
        finally:
            for server in servers:
                server.terminate()
                server.wait(30)
    for row in rows:
        a = alone[row["model"]]
        row["fraction_of_ort_throughput_b32"] = row["throughput"] / a["ort_throughput_b32"]
        row["ort_p50_ms_b1"] = a["ort_p50_ms_b1"]
    anchor = "perf_analyzer" if any(r["tool"] == "perf_analyzer" for r in rows) else "loadtest"
    main_rows = {r["concurrency"]: r for r in rows if r["model"] == MAIN and r["tool"] == anchor}
    checks: dict[str, object] = {"load_generator": anchor}
    if 32 in main_rows:
        checks["throughput_32"] = main_rows[32]["throughput"]
        checks["p95_ms_32"] = main_rows[32]["p95_ms"]
        checks["fraction_of_ort_throughput_b32"] = main_rows[32]["fraction_of_ort_throughput_b32"]
    if 1 in main_rows:
        checks["p50_ms_1"] = main_rows[1]["p50_ms"]
    for row in baseline:
        if row["concurrency"] == 32 and row["served_by"] != HAMNET:
            key = "batching" if row["served_by"] == MLSERVER_BATCHED else "no_batching"
            checks[f"throughput_ratio_to_mlserver_{key}_32"] = row["hamnet_throughput_ratio"]
    result = {"cpu_count": os.cpu_count(), "batch_size": BATCH, "duration_s": args.duration,
              "subjects_per_request": 1, "request_bytes": len(serialized(MAIN, [random_raw(
                  raws[names[0]].spec, raws[names[0]].preprocessor, 1, seed=0)])[0]),
              "ort_alone": alone, "rows": rows, "mlserver_rows": baseline, "fuzz": fuzzed, "targets": TARGETS,
              "measured": checks}
    write_json_atomic(args.out, result)
    for name in names:
        a = alone[name]
        print(f"\n{name}: ONNX Runtime alone {a['ort_p50_ms_b1']:.2f} ms at batch 1, "
              f"{a['ort_throughput_b32']:,.0f} inferences/s at batch 32 (one thread)")
        for tool in ("loadtest", "perf_analyzer"):
            table = [r for r in rows if r["model"] == name and r["tool"] == tool]
            if table:
                print(f"({tool})\n" + format_table(table))
    if baseline:
        print(f"\nhamnet serve and MLServer 1.7.1 (adaptive batching off, and on: {MLSERVER_BATCHING}) serving the "
              f"same {MAIN} graph (the project's load generator; the median of {ROUNDS} alternating rounds)")
        for server in (HAMNET, MLSERVER, MLSERVER_BATCHED):
            print(f"({server})\n" + format_table([r for r in baseline if r["served_by"] == server]))
        ratios = [f"x{r['concurrency']} {r['served_by']}: {r['hamnet_throughput_ratio']:.2f}" for r in baseline
                  if r["served_by"] != HAMNET]
        print("hamnet serve / MLServer throughput (medians of the alternating rounds): " + ", ".join(ratios))
    if fuzzed:
        print(f"\nfuzz: {fuzzed['requests']} malformed requests -> {fuzzed['status_counts']}; server alive: "
              f"{fuzzed['server_alive_after']}; RSS {fuzzed['rss_mb_before']:.0f} -> "
              f"{fuzzed['rss_mb_after_half']:.0f} -> {fuzzed['rss_mb_after']:.0f} MB")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
