"""Every GPU inference path in one call: build, check parity against the CPU JAX model, time.

    python experiments/gpu_check.py --run runs/main/fp32 [--student runs/main/student-0.25] \
        [--out experiments/results/gpu_check.json]

Paths, each run where its software is present and reported as missing (with the reason)
where not: the JAX predictor on the GPU (fp32 deterministic and MC, bf16), ONNX Runtime's
CUDA and TensorRT execution providers (onnxruntime-gpu), and TensorRT engines (fp16; int8
from the static-QDQ export calibrated on random raw requests of the training
distribution). Parity is max |GPU - CPU JAX fp32| on `prediction` for 64 random raw
requests; timings are p50 milliseconds at batch 1 and 256 and samples/s at 256.
Needs no GPU to import; on a machine without one every path reports what is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from hamnet_jax.evaluation.timing import request_latency  # noqa: E402
from hamnet_jax.inference.factory import jax_model_at  # noqa: E402
from hamnet_jax.inference.predictors import JaxPredictor, OnnxPredictor, Predictor  # noqa: E402
from hamnet_jax.inference.raw_inputs import random_raw  # noqa: E402
from hamnet_jax.inference.raw_model import RawModel  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.runs.run_dir import load_run  # noqa: E402


def check(name: str, make: Callable[[], Predictor], request: dict, reference: np.ndarray, results: list) -> None:
    row: dict = {"path": name}
    try:
        started = time.perf_counter()
        predictor = make()
        row["build_s"] = round(time.perf_counter() - started, 2)
        got = predictor.predict({k: v[:64] for k, v in request.items()})["prediction"]
        row["parity_max_abs"] = float(np.abs(got - reference).max())
        row["parity_max_rel"] = float((np.abs(got - reference) / np.abs(reference)).max())
        row["p50_ms_b1"] = request_latency(predictor, request, 1, 200).p50
        row["p50_ms_b256"] = request_latency(predictor, request, 256, 30).p50
        row["samples_per_s_b256"] = 256 / row["p50_ms_b256"] * 1e3
        row["status"] = "ok"
    except Exception as err:  # a missing package or device is a finding, not a crash
        row["status"] = f"missing or failed: {type(err).__name__}: {str(err).splitlines()[0][:300]}"
        row["trace"] = traceback.format_exc(limit=3)[-600:]
    results.append(row)
    shown = {k: v for k, v in row.items() if k != "trace"}
    print(json.dumps(shown), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/main/fp32")
    parser.add_argument("--student", default=None)
    parser.add_argument("--out", default="experiments/results/gpu_check.json")
    args = parser.parse_args()
    env = {"jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
           "default_backend": jax.default_backend()}
    try:
        import onnxruntime as ort
        env["onnxruntime"], env["ort_providers"] = ort.__version__, ort.get_available_providers()
    except ImportError:
        env["onnxruntime"] = None
    for module in ("tensorrt", "cupy"):
        try:
            env[module] = __import__(module).__version__
        except Exception as err:
            env[module] = f"absent ({type(err).__name__})"
    print(json.dumps(env), flush=True)

    results: list = []
    runs = {"standard": args.run} | ({"student": args.student} if args.student else {})
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    for label, path in runs.items():
        run = load_run(path)
        det = RawModel.from_run(run, 0)
        request = random_raw(det.spec, det.preprocessor, 256, seed=0)
        with jax.default_device(jax.devices("cpu")[0]):  # the reference: fp32 JAX on the CPU
            reference = np.asarray(jax.jit(det.float32().__call__)(
                JaxPredictor(det).validate({k: v[:64] for k, v in request.items()}))["prediction"])
        check(f"{label} jax-{jax.default_backend()} fp32", lambda d=det: JaxPredictor(d), request, reference, results)
        check(f"{label} jax-{jax.default_backend()} bf16", lambda d=det: JaxPredictor(jax_model_at(d, "bf16")),
              request, reference, results)
        mc = RawModel.from_run(run)
        check(f"{label} jax-{jax.default_backend()} fp32 MC x{mc.mc_samples} (parity vs deterministic: MC mean)",
              lambda m=mc: JaxPredictor(m), request, reference, results)

        from hamnet_jax.export.onnx_export import export_run_onnx

        onnx_paths = {}
        for precision in ("fp32", "fp16", "int8"):
            out = work / f"{label}-{precision}.onnx"
            try:
                export_run_onnx(det, out, precision, True, request if precision == "int8" else None)
                onnx_paths[precision] = out
            except Exception as err:
                print(json.dumps({"export": f"{label} {precision}", "failed": str(err)[:300]}), flush=True)
        for provider in ("cuda", "tensorrt"):
            for precision, out in onnx_paths.items():
                check(f"{label} onnxruntime-{provider} {precision}",
                      lambda o=out, p=provider, s=det.spec: OnnxPredictor(o, s, providers=(p, "cpu")),
                      request, reference, results)
        for precision in ("fp16", "int8"):
            if precision not in onnx_paths:
                continue

            def engine(o=onnx_paths[precision], p=precision, spec=det.spec) -> Predictor:
                from hamnet_jax.export.tensorrt_engine import build_engine
                from hamnet_jax.inference.tensorrt_runtime import TensorRTPredictor

                path = build_engine(o, o.with_suffix(".engine"), p, max_batch=256)
                return TensorRTPredictor(path, spec)

            check(f"{label} tensorrt {precision}", engine, request, reference, results)
    write_json_atomic(Path(args.out), {"environment": env, "results": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
