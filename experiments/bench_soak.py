"""Soak: the service under steady closed-loop load for minutes, with the model reloaded every
30 s, watched for errors, latency drift and memory growth.

    python experiments/bench_soak.py --run RUN [--minutes 10] [--clients 64] [--reload-every 30]
                                     [--backend onnxruntime] [--fixed-batch-sessions N ...]
                                     [--out experiments/results/bench_soak.json]

A model repository of RUN (one model, `--backend`; onnxruntime serves its deterministic
raw-input export, written here) is served by `hamnet serve --model-control explicit` as its
own process. `--clients` closed-loop gRPC clients (one subject per request, 64 distinct
requests) run for `--minutes`; every `--reload-every` seconds a RepositoryModelLoad call
reloads the model (the old version serves until the new one is ready). The server's
resident memory (RSS) is read every 5 s. Written: per 10 s window the throughput, p99
latency and errors; the total errors by status; RSS at start (after warm-up) and end, and
the growth of medians (the samples before the first reload against the last minute's); p99
of the first and the last minute. Targets (issue 39): 0 errors, RSS growth < 5%, last
minute's p99 within 1.5x the first's.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from hamnet_jax.bench.memory import host_rss_bytes
from hamnet_jax.client.loadtest import MODEL_INFER, requests_from_metadata, serialized
from hamnet_jax.client.service_process import serve_process, stop_process
from hamnet_jax.io_atomic import write_json_atomic

RESULTS = Path(__file__).parent / "results" / "bench_soak.json"
WINDOW_S = 10.0


def build_repository(run: Path, root: Path, backend: str, fixed_batch_sessions: list[int] | None = None) -> None:
    version = root / "hamnet" / "1"
    shutil.copytree(run, version, ignore=shutil.ignore_patterns("checkpoints", "tb", "plots", "*.npz.tmp"))
    if backend == "onnxruntime":
        from hamnet_jax.export.onnx_export import export_run_onnx
        from hamnet_jax.inference.raw_model import RawModel
        from hamnet_jax.runs.run_dir import load_run

        export_run_onnx(RawModel.from_run(load_run(run), 0), version / "model.onnx")
        options = "inference:\n  backend: onnxruntime\n  mc_samples: 0\n  batch_size: 32\n  intra_op_threads: 1\n"
        if fixed_batch_sessions is not None:
            options += f"  fixed_batch_sessions: {list(fixed_batch_sessions)}\n"
    else:
        options = "inference:\n  batch_size: 32\n"
    (root / "hamnet" / "inference.yaml").write_text(options)


async def load(url: str, payloads: list[bytes], clients: int, seconds: float) -> list[tuple[float, float, str]]:
    """(end time, latency s, status) of every call of `clients` closed-loop clients."""
    records: list[tuple[float, float, str]] = []
    stop = time.perf_counter() + seconds

    async def client(k: int) -> None:
        async with grpc.aio.insecure_channel(url) as channel:
            call, i = channel.unary_unary(MODEL_INFER), k
            while time.perf_counter() < stop:
                start = time.perf_counter()
                try:
                    await call(payloads[i % len(payloads)], timeout=60)
                    status = "OK"
                except grpc.aio.AioRpcError as err:
                    status = err.code().name
                end = time.perf_counter()
                records.append((end, end - start, status))
                i += clients

    await asyncio.gather(*(client(k) for k in range(clients)))
    return records


def reloader(url: str, every: float, until: float, log: list[dict]) -> None:
    channel = grpc.insecure_channel(url)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    next_at = time.perf_counter() + every
    while next_at < until:
        time.sleep(max(0.0, next_at - time.perf_counter()))  # (pacing the reloads, not deciding anything)
        started = time.perf_counter()
        try:
            stub.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name="hamnet"), timeout=120)
            status = "OK"
        except grpc.RpcError as err:
            status = err.code().name
        log.append({"at_s": started, "seconds": time.perf_counter() - started, "status": status})
        next_at += every
    channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--reload-every", type=float, default=30.0)
    parser.add_argument("--backend", choices=("onnxruntime", "jax"), default="onnxruntime")
    parser.add_argument("--fixed-batch-sessions", type=int, nargs="*", default=None,
                        help="onnxruntime: inference.fixed_batch_sessions (default: the config's default)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.fixed_batch_sessions is not None and args.backend != "onnxruntime":
        parser.error("--fixed-batch-sessions sets ONNX Runtime sessions; it needs --backend onnxruntime")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repository"
        build_repository(Path(args.run), root, args.backend, args.fixed_batch_sessions)
        process, url = serve_process(root, Path(tmp) / "serve.log", extra=["--model-control", "explicit",
                                                                           "--no-access-log"])
        try:
            payloads = serialized("hamnet", requests_from_metadata(url, "hamnet", count=64))
            asyncio.run(load(url, payloads, args.clients, 10.0))  # warm-up, not recorded
            rss: list[tuple[float, int]] = []
            reloads: list[dict] = []
            t0 = time.perf_counter()
            until = t0 + args.minutes * 60
            done = threading.Event()

            def sample() -> None:
                while not done.wait(5.0):
                    rss.append((time.perf_counter() - t0, host_rss_bytes(process.pid)))

            watchers = [threading.Thread(target=sample, daemon=True),
                        threading.Thread(target=reloader, args=(url, args.reload_every, until, reloads), daemon=True)]
            rss.append((0.0, host_rss_bytes(process.pid)))
            for w in watchers:
                w.start()
            records = asyncio.run(load(url, payloads, args.clients, args.minutes * 60))
            done.set()
            for w in watchers:
                w.join()
            rss.append((time.perf_counter() - t0, host_rss_bytes(process.pid)))
        finally:
            stop_process(process)
    windows = []
    for start in np.arange(0, args.minutes * 60, WINDOW_S):
        inside = [r for r in records if start <= r[0] - t0 < start + WINDOW_S]
        ok = [r[1] for r in inside if r[2] == "OK"]
        windows.append({"start_s": float(start), "throughput": len(ok) / WINDOW_S,
                        "p99_ms": float(np.percentile(ok, 99) * 1e3) if ok else None,
                        "errors": sum(r[2] != "OK" for r in inside)})
    minute = lambda lo, hi: float(np.percentile([r[1] for r in records if lo <= r[0] - t0 < hi and r[2] == "OK"],
                                                99) * 1e3)
    errors: dict[str, int] = {}
    for r in records:
        if r[2] != "OK":
            errors[r[2]] = errors.get(r[2], 0) + 1
    total = args.minutes * 60
    before_reload = [b for t, b in rss if t < (reloads[0]["at_s"] - t0 if reloads else total)]
    last_minute = [b for t, b in rss if t >= total - 60]
    result = {"run": args.run, "backend": args.backend, "fixed_batch_sessions": args.fixed_batch_sessions,
              "clients": args.clients, "minutes": args.minutes,
              "reload_every_s": args.reload_every, "requests": len(records), "errors": errors,
              "error_count": sum(errors.values()), "rss_start_bytes": rss[0][1], "rss_end_bytes": rss[-1][1],
              "rss_growth": rss[-1][1] / rss[0][1] - 1, "rss": rss, "p99_first_minute_ms": minute(0, 60),
              # the same growth from medians (samples jitter by ~10 MiB with the calls in flight): the samples
              # before the first reload against those of the last minute
              "rss_growth_of_medians": float(np.median(last_minute) / np.median(before_reload) - 1),
              "p99_last_minute_ms": minute(total - 60, total), "windows": windows,
              "reloads": [{**r, "at_s": r["at_s"] - t0} for r in reloads]}
    result["p99_last_over_first"] = result["p99_last_minute_ms"] / result["p99_first_minute_ms"]
    write_json_atomic(Path(args.out), result)
    print(f"{len(records):,} calls by {args.clients} clients in {args.minutes:g} min, {len(reloads)} reloads "
          f"({sum(r['status'] != 'OK' for r in reloads)} failed): errors {errors or 0}; RSS "
          f"{rss[0][1] / 2**20:.0f} -> {rss[-1][1] / 2**20:.0f} MiB ({result['rss_growth']:+.1%}; of medians "
          f"{result['rss_growth_of_medians']:+.1%}); p99 first minute "
          f"{result['p99_first_minute_ms']:.1f} ms, last {result['p99_last_minute_ms']:.1f} ms "
          f"({result['p99_last_over_first']:.2f}x); wrote {args.out}")


if __name__ == "__main__":
    main()
