"""The fitted wide start's logistic fit: L-BFGS against Newton's method (`logistic_fit` picks
Newton up to `NEWTON_MAX_FEATURES` wide inputs, L-BFGS beyond).

    python experiments/bench_wide_start.py [--shapes 2000x1000,2000x2000,3000x3300] [--newton-up-to 2000]

`logistic_cv` picks the L2 penalty by 5-fold CV along a warm-started path of 13 penalties,
then refits on every row, along the same path by either method: Newton's forms and solves
the F x F Hessian at every step, L-BFGS takes two matrix-vector products per step. Both
run on the same rows here, one after the other; the table gives each one's seconds, their
ratio, the penalty each picked and the largest difference of the final weights. Newton's
method runs only up to `--newton-up-to` features (its cost grows as F^3: minutes per path
beyond), so wider rows time L-BFGS alone. Rows are standardized Gaussian features with a
sparse true logit (UK Biobank's wide inputs number about 3,300). Writes
experiments/results/bench_wide_start.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hamnet_jax.io_atomic import write_json_atomic
from hamnet_jax.training import wide_start

RESULTS = Path(__file__).parent / "results" / "bench_wide_start.json"


def data(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features))
    w = np.zeros(features)
    w[:20] = rng.normal(0, 0.4, 20)
    return x, (rng.random(rows) < 1 / (1 + np.exp(-(x @ w - 1.5)))).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="2000x1000,2000x2000,3000x3300")
    parser.add_argument("--newton-up-to", type=int, default=2000, help="widest input the reference solves")
    args = parser.parse_args()
    rows = []
    for shape in args.shapes.split(","):
        n, f = (int(v) for v in shape.split("x"))
        x, y = data(n, f)
        seconds, betas, penalties = {}, {}, {}
        solvers = {"lbfgs": wide_start.logistic_lbfgs,
                   **({"newton": wide_start.logistic_newton} if f <= args.newton_up_to else {})}
        for name, solver in solvers.items():
            start = time.perf_counter()
            w, b, penalties[name] = wide_start.logistic_cv(x, y, solver=solver)
            seconds[name] = time.perf_counter() - start
            betas[name] = np.append(w, b)
        row = {"rows": n, "features": f, "seconds": seconds, "penalty": penalties}
        if "newton" in seconds:
            row["speedup"] = seconds["newton"] / seconds["lbfgs"]
            row["max_abs_weight_difference"] = float(np.abs(betas["lbfgs"] - betas["newton"]).max())
        rows.append(row)
        write_json_atomic(RESULTS, {"rows": rows})
    print(f"{'rows':>6} {'features':>8} {'L-BFGS s':>9} {'Newton s':>9} {'speed-up':>9} {'penalties':>16} "
          f"{'max |dw|':>9}")
    for r in rows:
        if "speedup" not in r:
            print(f"{r['rows']:>6} {r['features']:>8} {r['seconds']['lbfgs']:>9.2f} {'-':>9} {'-':>9} "
                  f"{r['penalty']['lbfgs']:>16g} {'-':>9}")
            continue
        pen = f"{r['penalty']['lbfgs']:g} / {r['penalty']['newton']:g}"
        print(f"{r['rows']:>6} {r['features']:>8} {r['seconds']['lbfgs']:>9.2f} {r['seconds']['newton']:>9.2f} "
              f"{r['speedup']:>8.1f}x {pen:>16} {r['max_abs_weight_difference']:>9.1e}")


if __name__ == "__main__":
    main()
