"""`hamnet predict`, `export`, `serve` and `loadtest`: the inference and serving commands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hamnet_jax.cli.setup import _setup
from hamnet_jax.errors import InputError
from hamnet_jax.serving.request_memory import (COPIES_PER_BYTE, DEFAULT_MAX_MESSAGE_BYTES,
                                               DEFAULT_REQUEST_MEMORY_BYTES)


def cmd_predict(args: argparse.Namespace) -> None:
    import dataclasses

    from hamnet_jax.inference.factory import build_predictor
    from hamnet_jax.inference.predict_file import predict_file
    from hamnet_jax.inference.raw_model import RawModel
    from hamnet_jax.runs.run_dir import load_run

    config = _setup(args)
    options = config.section("inference")
    if args.backend:
        options = dataclasses.replace(options, backend={"onnx": "onnxruntime"}.get(args.backend, args.backend))
    if args.uncertainty:
        options = dataclasses.replace(options, uncertainty=args.uncertainty)
    run = load_run(args.run)
    predictor = build_predictor(RawModel.from_options(run, options), options, args.model)
    subjects = predict_file(predictor, run.schema, run.config.data, args.data, args.out, progress=not args.quiet)
    print(f"wrote predictions for {subjects} subjects to {args.out} ({options.backend} backend)")


def cmd_export(args: argparse.Namespace) -> None:
    from hamnet_jax.data.dataset import open_cohort, split_cohort
    from hamnet_jax.export.formats import FORMATS, export_format, steps
    from hamnet_jax.inference.predictor import primary_output
    from hamnet_jax.inference.raw_model import RawModel
    from hamnet_jax.runs.run_dir import load_run
    from hamnet_jax.terminal_progress import StepBar

    _setup(args)
    if args.calibration and args.format not in ("onnx-int8", "tensorrt-int8"):
        raise InputError(f"--calibration applies to static int8 (onnx-int8, tensorrt-int8), not --format {args.format}")
    if args.max_batch is not None and not args.format.startswith(("tensorrt", "triton")):
        raise InputError(f"--max-batch sizes a TensorRT engine's profile or a Triton model's max_batch_size; ONNX "
                         f"graphs take any batch (--format {args.format})")
    if args.name is not None and args.format != "triton":
        raise InputError(f"--name names the model of a Triton repository (--format triton), not --format {args.format}")
    run = load_run(args.run)
    raw = RawModel.from_run(run, args.mc_samples, args.uncertainty)
    train = test = None
    if args.data:
        # (through the run's cohort cache, as training read the file: only the subjects
        # calibration reads and the test split a chunk at a time are in memory)
        parts = split_cohort(open_cohort(args.data, run.schema, run.config.data), run.config.data)
        train, test = parts["train"], parts["test"]
    bar = StepBar(steps(args.format), f"export {args.format}", enabled=not args.quiet)
    try:
        if args.format == "triton":
            from hamnet_jax.export.triton_repository import write_triton_repository

            d = write_triton_repository(lambda path: export_format(raw, path, "onnx", True, train, test,
                                                                   on_step=bar), args.out,
                                        args.name or "hamnet", args.max_batch or 256)
        raw_inputs = args.raw_inputs or args.format.startswith(("tensorrt", "triton"))
        if args.format != "triton":
            d = export_format(raw, args.out, args.format, raw_inputs, train, test, args.calibration or "minmax",
                              args.max_batch or 256, on_step=bar)
    finally:
        bar.close()
    if args.format == "triton":
        print(f"wrote the Triton model repository {args.out}: {d['config']} (max_batch_size {d['max_batch_size']}, "
              f"dynamic batching) and {d['path']}; serve it with: tritonserver --model-repository {args.out}")
    inputs = "raw inputs (data-file units, NaN = missing)" if raw_inputs else "standardized arrays"
    mode = {"mc": f"MC dropout, {d['mc_samples']} fixed masks", "distilled": "one pass, distilled MC spread",
            "none": "deterministic"}[raw.uncertainty]
    print(f"wrote {d['path']} ({d['bytes'] / 1e6:.2f} MB, {args.format}: {FORMATS.get(args.format, 'fp32')}, {inputs}, "
          f"batch dimension 'B', {run.config.data.max_visits} visit slots, {mode}); outputs {', '.join(d['outputs'])}")
    if run.model.mode is not None and d.get("int8_weights"):
        w = d["int8_weights"]
        print(f"note: {args.run} is an int8 run ({run.model.mode}); the graph stores its own int8 weights "
              f"({w['embedded']} of {w['quantized']} quantized kernels) and computes weight-only (float activations)")
    elif run.model.mode is not None:
        print(f"note: {args.run} is an int8 run ({run.model.mode}); ONNX Runtime requantized its dequantized weights")
    elif run.model_config.dtype != "float32":
        print(f"note: {args.run} computes in {run.model_config.dtype}; traced in float32 (jax2onnx half-precision "
              "graphs do not load in ONNX Runtime)")
    parity = d["parity"]
    primary = primary_output(d["outputs"])
    for bs in (1, 64):
        p = parity[f"batch_{bs}"]
        spread = "total_std" if "total_std" in p["max_abs"] else None
        print(f"parity vs JAX float32 at batch {bs}: {primary} max |diff| {p['max_abs'][primary]:.2e} "
              f"({p[f'{primary}_max_rel']:.2e} relative)"
              + (f", {spread} {p['max_abs'][spread]:.2e}" if spread else ""))
    for key, what in (("test_mae", "test MAE"), ("test_log_loss", "test log loss")):
        if key in parity:
            t = parity[key]
            print(f"{what} ({t['subjects']} subjects): {t['onnx']:.4f} vs JAX float32 {t['jax_fp32']:.4f} "
                  f"({t['relative_change']:+.2%})")
    print(f"described in {d['path']}.json")


SERVE_MALLOC_ARENAS = 2


def _check_ports_and_limits(args: argparse.Namespace) -> None:
    """`hamnet serve`'s port and limit flags, each refused by name when out of range."""
    if args.metrics_host and args.metrics_port < 0:
        raise InputError("--metrics-host places /metrics, which --metrics-port -1 turns off: drop one of them")
    if args.max_concurrent_calls < 1:
        raise InputError(f"--max-concurrent-calls: expected at least 1, got {args.max_concurrent_calls}")
    if not 1 <= args.max_message_mb <= 2047:  # gRPC's message lengths are 32-bit
        raise InputError(f"--max-message-mb: expected 1-2047, got {args.max_message_mb}")
    if args.max_request_memory_mb < 1:
        raise InputError(f"--max-request-memory-mb: expected at least 1, got {args.max_request_memory_mb}")
    if not -1 <= args.http_port <= 65535:
        raise InputError(f"--http-port {args.http_port}: expected a port in 0-65535 (0: a free one) or -1 (off)")


def cmd_serve(args: argparse.Namespace) -> None:
    import signal

    from hamnet_jax.serving.repository import Repository
    from hamnet_jax.monitoring.logs import use_json_logs
    from hamnet_jax.serving.server import start_server

    config = _setup(args)
    use_json_logs(config.general.log_level)  # a service's logs are read by collectors: JSON lines
    if "MALLOC_ARENA_MAX" not in os.environ:  # (glibc applies the user's own setting itself)
        from hamnet_jax.platform.freed_memory import limit_malloc_arenas

        # measured in the 10-minute soak (bench_soak.py): resident memory +10.5% with glibc's
        # default arenas, +6.0% with 2, and throughput 1.06x
        limit_malloc_arenas(SERVE_MALLOC_ARENAS)
    if bool(args.run) == bool(args.repository):
        raise InputError("hamnet serve: give exactly one of --run RUN or --repository DIR")
    if args.name is not None and args.repository:
        raise InputError("--name names the model of --run; a repository's models are named by their directories")
    options = config.section("inference")
    deployment = config.section("deployment")
    given = config.given.get("deployment", ())
    host = args.host or deployment.api_host
    port = args.port if args.port is not None else (deployment.api_port if "api_port" in given else 8001)
    token = os.environ.get("HAMNET_API_TOKEN") or None
    if args.token_file:
        token = Path(args.token_file).read_text().strip() or None
        if token is None:
            raise InputError(f"--token-file {args.token_file} is empty")
    if args.insecure and (token or is_loopback(host)):
        why = "a token is set" if token else f"--host {host} is loopback"
        raise InputError(f"--insecure serves a non-loopback --host without a token; here {why}, so it would change "
                         "nothing: drop it")
    if args.strict and args.run:
        raise InputError("--strict applies to --repository (a model that fails to load); --run exits on a failed "
                         "load already")
    _check_ports_and_limits(args)
    if not (token or is_loopback(host)):  # before any model loads: refused at once
        if not args.insecure:
            raise InputError(f"--host {host} is reachable from other machines and no token is set: give "
                             "--token-file FILE (or HAMNET_API_TOKEN), or --insecure to serve without "
                             "authentication")
        print(f"hamnet serve: warning: serving on {host} without authentication (--insecure): anyone who reaches "
              "the port can run and unload models", file=sys.stderr, flush=True)
    if args.run:
        repository = Repository.single_run(args.run, args.name or "hamnet", options)
    else:
        root = Path(args.repository)
        if not root.is_dir():
            raise InputError(f"--repository {root} is not a directory")
        repository = Repository(root, options)
        failed = repository.load_all(strict=args.strict)
        for name, reason in failed.items():  # served without it: UNAVAILABLE in RepositoryIndex, with the reason
            print(f"hamnet serve: warning: model {name!r} did not load ({reason}); serving the others",
                  file=sys.stderr, flush=True)
    tls = None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InputError("TLS needs both --tls-cert and --tls-key")
    if args.tls_cert:
        tls = (Path(args.tls_cert).read_bytes(), Path(args.tls_key).read_bytes())
    server = start_server(repository, host, port, args.workers, token=token, tls=tls,
                          metrics_port=None if args.metrics_port < 0 else args.metrics_port,
                          access_log=args.access_log, model_control=args.model_control == "explicit",
                          metrics_host=args.metrics_host, max_concurrent_calls=args.max_concurrent_calls,
                          max_message_bytes=args.max_message_mb << 20,
                          request_memory_bytes=args.max_request_memory_mb << 20,
                          http_port=None if args.http_port < 0 else args.http_port)
    models = ", ".join(f"{m.name}/{m.version} ({m.options.backend})" for m in repository.loaded())
    extras = ", TLS" * bool(tls) + ", bearer token" * bool(token)
    if server.http is not None:
        extras += f"; KServe V2 REST on {'https' if tls else 'http'}://{host}:{server.http_port}/v2"
    if server.metrics is not None:
        extras += f"; Prometheus metrics on http://{host}:{server.metrics.port}/metrics"
    print(f"serving {models} on {host}:{server.port} (KServe V2 gRPC, grpc.health.v1, reflection{extras})",
          flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(args.grace))
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop(args.grace)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def cmd_deploy(args: argparse.Namespace) -> None:
    from hamnet_jax.optimization.deployment import HAMNetDeploymentManager

    config = _setup(args)
    manager = HAMNetDeploymentManager(args.repository, config.section("deployment"), args.out)
    if "api_host" in config.given.get("deployment", ()) and manager.config.environment != "local":
        print(f"hamnet deploy: note: deployment.api_host ({manager.config.api_host}) applies to local serving; "
              "the container listens on all interfaces (HAMNET_API_HOST=0.0.0.0), as its probes need",
              file=sys.stderr)
    written = [manager.generate_dockerfile(), *manager.generate_kubernetes_manifests().values()]
    print("wrote " + ", ".join(str(p) for p in written))
    if manager.config.kserve_models == "storage" and not manager.config.storage_uri:
        print("hamnet deploy: note: no KServe manifests: KServe pulls the models from deployment.storage_uri "
              "(s3://, gs://, pvc://...), which is not set (or set deployment.kserve_models: image)", file=sys.stderr)
    target = "gpu" if manager.config.gpus else "cpu"
    print(f"build: docker build -f {Path(args.out) / 'Dockerfile'} --target {target} "
          f"--build-arg MODEL_REPOSITORY={args.repository} -t {manager.config.image} .")
    if args.apply:
        manager.deploy()


def cmd_loadtest(args: argparse.Namespace) -> None:
    from hamnet_jax.io_atomic import write_json_atomic
    from hamnet_jax.client.loadtest import format_table, requests_from_metadata, sweep

    _setup(args)
    try:
        levels = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        raise InputError(f"--concurrency: expected comma-separated client counts, got {args.concurrency!r}") from None
    if not levels or min(levels) < 1 or args.duration <= 0:
        raise InputError("--concurrency needs counts >= 1 and --duration a positive number of seconds")
    import grpc

    from hamnet_jax.client.client import Credentials

    credentials = Credentials.from_files(args.token_file, args.tls_roots)
    try:
        requests = requests_from_metadata(args.url, args.model, subjects=args.subjects, credentials=credentials)
    except grpc.RpcError as err:
        raise InputError(f"--url {args.url} --model {args.model}: {err.code().name}: {err.details()}") from None
    rows = sweep(args.url, args.model, requests, levels, args.duration, credentials)
    print(format_table(rows))
    if args.out:
        write_json_atomic(Path(args.out), {"url": args.url, "model": args.model, "subjects_per_request": args.subjects,
                                           "duration_s": args.duration, "rows": rows})


UNCERTAINTY_CHOICES = ("auto", "distilled", "mc")  # inference/raw_model.py UNCERTAINTY_MODES (not imported: lazy CLI)


def add_inference_parsers(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("predict", help="predictions with uncertainty, one row per subject")
    r.add_argument("--run", required=True)
    r.add_argument("--data", required=True)
    r.add_argument("--out", required=True, help="CSV file to write")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--config", help="hamnet_config.yaml: its inference section")
    r.add_argument("--backend", choices=("jax", "onnx", "onnxruntime", "tensorrt"),
                   help="override inference.backend (default jax: the run itself)")
    r.add_argument("--model", help="the exported raw-input .onnx file or TensorRT engine (onnx / tensorrt backends)")
    r.add_argument("--uncertainty", choices=UNCERTAINTY_CHOICES,
                   help="override inference.uncertainty: distilled (one pass, the run's distilled MC spread; auto's "
                        "choice when the run has it) or mc (MC dropout, the run's training.mc_samples)")
    r.set_defaults(func=cmd_predict)

    x = sub.add_parser("export", help="export to ONNX (fp32 / fp16 / int8) or a TensorRT engine, checked against JAX")
    x.add_argument("--run", required=True)
    x.add_argument("--out", required=True, help="file to write (.onnx or a TensorRT engine); with --format triton, "
                                                "the model repository's directory")
    x.add_argument("--format", default="onnx", choices=("onnx", "onnx-fp16", "onnx-int8", "onnx-int8-dynamic",
                                                         "tensorrt", "tensorrt-int8", "triton"),
                   help="triton: a model repository for Triton's onnxruntime backend (DIR/<name>/config.pbtxt and "
                        "DIR/<name>/1/model.onnx, raw inputs, fp32)")
    x.add_argument("--name", help="the Triton model's name (--format triton; default hamnet)")
    x.add_argument("--raw-inputs", action="store_true",
                   help="the graph takes the data file's values (NaN = missing) and standardizes inside; default: "
                        "standardized arrays and masks (TensorRT engines always take raw inputs)")
    x.add_argument("--mc-samples", type=int, default=None,
                   help="MC-dropout samples carried as fixed masks (default: the run's training.mc_samples); "
                        "0 = deterministic, no epistemic_std")
    x.add_argument("--uncertainty", choices=UNCERTAINTY_CHOICES, default="auto",
                   help="the spreads: distilled (one deterministic pass and the run's distilled MC spread; auto's "
                        "choice when the run has it and --mc-samples is not given) or mc (--mc-samples fixed masks)")
    x.add_argument("--data", help="the run's data file: calibrates int8 on its training split and compares test MAE")
    x.add_argument("--calibration", choices=("minmax", "percentile", "entropy"),
                   help="static int8 activation-range calibration (default minmax)")
    x.add_argument("--max-batch", type=int, help="largest batch of a TensorRT engine's profile, or a Triton "
                                                  "model's max_batch_size (default 256)")
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    x.set_defaults(func=cmd_export)

    _add_serve_parser(sub)

    d = sub.add_parser("deploy", help="Dockerfile, Kubernetes manifests and a KServe InferenceService from the "
                                      "deployment: section (checked); --apply deploys to deployment.environment")
    d.add_argument("--config", help="hamnet_config.yaml: its deployment section (each served model's options are "
                                    "its inference.yaml in the repository)")
    d.add_argument("--out", default="deploy", help="directory for Dockerfile, kubernetes.yaml, kserve.yaml")
    d.add_argument("--repository", default="model_repository",
                   help="the model repository the image serves (a directory of the build context)")
    d.add_argument("--apply", action="store_true",
                   help="then deploy: local serves here; docker builds and runs; kubernetes / cloud kubectl apply")
    d.set_defaults(func=cmd_deploy)

    lt = sub.add_parser("loadtest", help="closed-loop gRPC load at several concurrencies: the scalability table")
    lt.add_argument("--url", default="127.0.0.1:8001", help="host:port of the server")
    lt.add_argument("--token-file", help="send `authorization: Bearer <token>` (or set HAMNET_API_TOKEN)")
    lt.add_argument("--tls-roots", help="PEM root certificates: connect with TLS, verifying the server by them")
    lt.add_argument("--model", default="hamnet")
    lt.add_argument("--concurrency", default="1,8,32,64", help="client counts, comma-separated")
    lt.add_argument("--duration", type=float, default=10.0, help="seconds per level (after 1 s of warm-up)")
    lt.add_argument("--subjects", type=int, default=1, help="subjects per request")
    lt.add_argument("--out", help="JSON file for the rows")
    lt.set_defaults(func=cmd_loadtest)


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("serve", help="serve runs over gRPC, and REST with --http-port (KServe V2 / Triton protocol)")
    v.add_argument("--run", help="one run directory, served as model --name version 1")
    v.add_argument("--repository", help="a model repository: <model>/<version>/ run directories")
    v.add_argument("--name", help="model name of --run (default hamnet)")
    v.add_argument("--config", help="hamnet_config.yaml: its inference and deployment sections")
    v.add_argument("--host", help="address to listen on (default deployment.api_host / HAMNET_API_HOST, 127.0.0.1)")
    v.add_argument("--port", type=int, help="port (default deployment.api_port / HAMNET_API_PORT if set, else 8001)")
    v.add_argument("--http-port", type=int, default=-1,
                   help="also serve the V2 REST protocol on this port (Triton's is 8000; 0: a free one), with the "
                        "same token, TLS, limits, metrics and logs (default -1: off)")
    v.add_argument("--max-message-mb", type=int, default=DEFAULT_MAX_MESSAGE_BYTES >> 20,
                   help="largest request or response, MiB, for gRPC messages and REST bodies; a larger gRPC request "
                        "is refused RESOURCE_EXHAUSTED before it is read, a larger body 413 (default "
                        f"{DEFAULT_MAX_MESSAGE_BYTES >> 20})")
    v.add_argument("--max-request-memory-mb", type=int, default=DEFAULT_REQUEST_MEMORY_BYTES >> 20,
                   help="memory inference requests may hold at once, MiB, being received or computed (counted as "
                        f"{COPIES_PER_BYTE}x their size; while receiving, as --max-message-mb); calls beyond it "
                        f"wait, their bodies unread (default {DEFAULT_REQUEST_MEMORY_BYTES >> 20})")
    v.add_argument("--workers", type=int, default=16,
                   help="executor threads (model loads; predictions of models without dynamic batching)")
    v.add_argument("--no-access-log", dest="access_log", action="store_false",
                   help="no JSON log line per ModelInfer call (errors are still logged)")
    v.add_argument("--grace", type=float, default=10.0, help="seconds in-flight calls get at shutdown")
    v.add_argument("--metrics-port", type=int, default=8002, help="Prometheus /metrics HTTP port (-1: off)")
    v.add_argument("--metrics-host", help="address /metrics listens on (default: --host); it has no token, so keep "
                                          "it where only the scraper reaches")
    v.add_argument("--max-concurrent-calls", type=int, default=1024,
                   help="inference calls in flight at once; beyond it RESOURCE_EXHAUSTED (default 1024; health "
                        "checks are never refused)")
    v.add_argument("--model-control", choices=("none", "explicit"), default="none",
                   help="explicit: clients may load and unload models over the API (with the token when one is "
                        "set); none (default): the repository is loaded at start only, as Triton's default")
    v.add_argument("--token-file", help="require `authorization: Bearer <token>` (or set HAMNET_API_TOKEN)")
    v.add_argument("--strict", action="store_true",
                   help="exit when a model of --repository fails to load (default: serve the others, and report "
                        "it as UNAVAILABLE with its reason)")
    v.add_argument("--insecure", action="store_true",
                   help="serve a non-loopback --host without a token (refused otherwise)")
    v.add_argument("--tls-cert", help="PEM certificate chain: serve TLS")
    v.add_argument("--tls-key", help="PEM private key of --tls-cert")
    v.set_defaults(func=cmd_serve)
