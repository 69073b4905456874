"""Knowledge distillation: teacher vs students at ~0.25 of its parameters, measured in one run.

For a trained teacher run, trains students of the config `student_config(teacher, ratio)`
picks, all from the same initialization, for the same epochs, batch order and seed:

* no distillation (the task loss alone: the control every distilled student must beat);
* soft targets (Gaussian KL to the teacher's predictive distribution);
* soft targets + FitNets feature matching + attention transfer;
* soft targets + relational (RKD distance and angle);
* self-distillation (EMA of the student as its own teacher, no big teacher);
* two teachers (the teacher and the no-distillation student), uncertainty-weighted.

Then measures teacher and every student side by side: test MAE (years), R^2, parameters
and throughput at batch 256 (median of interleaved jitted calls).

    hamnet cohort --out cohort.parquet
    hamnet train --data cohort.parquet --tier standard --out runs/standard
    python experiments/bench_distillation.py --run runs/standard --data cohort.parquet

Students are trained one at a time and stored in the JSON as they finish (atomically), so
an interrupted run resumes with the next student. Writes
experiments/results/bench_distillation.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from hamnet_jax.runs.compress import load_run_splits  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.models.hamnet import HAMNet, init_params  # noqa: E402
from hamnet_jax.compression.distill_student import distill_student  # noqa: E402
from hamnet_jax.training.distill_step import DistillSpec  # noqa: E402
from hamnet_jax.evaluation.metrics import point_metrics  # noqa: E402
from hamnet_jax.evaluation.timing import latency_ms  # noqa: E402
from hamnet_jax.export.compressed_checkpoint import load_compressed, save_compressed  # noqa: E402
from hamnet_jax.inference.compressed import CompressedModel  # noqa: E402
from hamnet_jax.training.fit_options import FitOptions  # noqa: E402
from hamnet_jax.training.plan import Plan  # noqa: E402
from hamnet_jax.training.state import count_params  # noqa: E402
from hamnet_jax.compression.student import student_config  # noqa: E402

PLAIN = "student, no distillation"
SOFT = (("gaussian_kl", 1.0),)
VARIANTS: dict[str, dict] = {
    PLAIN: {},
    "student, soft targets": {"terms": SOFT},
    "student, soft + FitNets + attention": {"terms": SOFT + (("feature_matching", 1.0), ("attention_transfer", 1.0))},
    "student, soft + relational": {"terms": SOFT + (("rkd_distance", 1.0), ("rkd_angle", 2.0))},
    "student, self-distillation (EMA)": {"terms": SOFT, "ema": True},
    "student, 2 teachers (uncertainty)": {"terms": SOFT, "second_teacher": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--ratio", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ema-decay", type=float, default=0.99)
    ap.add_argument("--seed", type=int, default=0, help="student initialization, batch order and dropout")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--only", default="", help="semicolon-separated variant names (default: all)")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bench_distillation.json"))
    args = ap.parse_args()
    out = Path(args.out)
    store = json.loads(out.read_text()) if out.exists() else {}
    setting = {"run": str(args.run), "ratio": args.ratio, "epochs": args.epochs, "alpha": args.alpha, "lr": args.lr,
               "seed": args.seed}
    if store.get("setting") != setting:
        store = {"setting": setting, "students": {}}
    ckpt_dir = out.with_suffix("")  # trained students kept for the resumed run's measurements
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    run, _, batches = load_run_splits(args.run, args.data)
    train, val, test, std = batches["train"], batches["val"], batches["test"], run.preprocessor.target_std
    teacher = (run.model_config, run.params)
    student = student_config(run.model_config, args.ratio)
    options = FitOptions()
    ft = options.config(args.epochs, 128, args.lr, args.seed)
    start = init_params(HAMNet(student), train.take(np.arange(2)), jax.random.key(ft.seed))
    wanted = [v for v in VARIANTS if not args.only or v in args.only.split(";")]
    trained: dict[str, object] = {}
    for name in VARIANTS:
        path = ckpt_dir / f"{list(VARIANTS).index(name)}.safetensors"
        if name in store["students"] and path.exists():
            trained[name] = load_compressed(path)[0]
            continue
        if name not in wanted:
            continue
        v = VARIANTS[name]
        began = time.perf_counter()
        if name == PLAIN:
            result = options.fit(student, ft, train, val, Plan(init_params=start))
        else:
            spec = DistillSpec(terms=v["terms"], alpha=args.alpha, teacher_mode="uncertainty")
            teachers = [teacher] + ([(student, trained[PLAIN])] if v.get("second_teacher") else [])
            result = distill_student([] if v.get("ema") else teachers, student, train, val, spec, ft,
                                     ema_decay=args.ema_decay if v.get("ema") else None, student_params=start)
        save_compressed(path, result.params)
        trained[name] = result.params
        store["students"][name] = {"train_seconds": time.perf_counter() - began, "best_epoch": result.best_epoch,
                                   "history": result.history}
        write_json_atomic(out, store)
        print(f"trained {name!r} in {store['students'][name]['train_seconds']:.0f} s", flush=True)

    models = {"teacher": CompressedModel(*teacher), **{k: CompressedModel(student, p) for k, p in trained.items()}}
    predicts = {k: m.predict_fn() for k, m in models.items()}
    bs = 256
    latency = latency_ms(predicts, test.take(np.arange(min(bs, test.size))), args.reps)
    rows = []
    for name, m in models.items():
        metrics = point_metrics(predicts[name], test, std)
        rows.append({"model": name, "params": count_params(m.params), "mae": metrics["mae"], "rmse": metrics["rmse"],
                     "r2": metrics["r2"], "throughput_b256": bs / latency[name] * 1e3,
                     "speedup_b256": latency["teacher"] / latency[name]})
    t_mae = rows[0]["mae"]
    plain_mae = next((r["mae"] for r in rows if r["model"] == PLAIN), None)
    print(f"Knowledge distillation (JAX {jax.__version__}, {platform.processor() or platform.machine()}, "
          f"{jax.devices()[0].device_kind}; student {student.embed_dim} wide, {args.epochs} epochs, "
          f"alpha {args.alpha}, {test.size} test subjects)")
    print(f"{'Model':<38}{'Params':>9}{'ratio':>7}{'MAE':>7}{'vs teacher':>11}{'vs plain':>9}{'R2':>7}"
          f"{'Thru b256/s':>12}{'Speedup':>8}")
    for r in rows:
        r["param_ratio"] = r["params"] / rows[0]["params"]
        r["mae_vs_teacher"] = (r["mae"] - t_mae) / t_mae
        r["mae_vs_plain"] = None if plain_mae is None else (r["mae"] - plain_mae) / plain_mae
        vs_plain = "" if r["mae_vs_plain"] is None else f"{r['mae_vs_plain']:+.2%}"
        print(f"{r['model']:<38}{r['params']:9,}{r['param_ratio']:7.3f}{r['mae']:7.3f}{r['mae_vs_teacher']:+11.2%}"
              f"{vs_plain:>9}{r['r2']:7.3f}{r['throughput_b256']:12.0f}{r['speedup_b256']:8.2f}")
    store.update(rows=rows, student_config=student.to_dict(), jax=jax.__version__,
                 device=jax.devices()[0].device_kind)
    write_json_atomic(out, store)


if __name__ == "__main__":
    main()
