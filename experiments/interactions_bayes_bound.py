"""What the interaction world's features allow at best: the Bayes-optimal prediction of age.

    python experiments/interactions_bayes_bound.py [--seeds 0 1 2] [--subjects 6000]
                                                   [--out experiments/results/interactions_bayes_bound.json]

The model-quality benchmark's oracle (experiments/bench_model_quality.py) is gradient
boosting given the latent biological age b itself, which no model of the features sees.
This script computes, on the same test cohorts (seed 1000 + s, all subjects), the best any
model of the features can do in expectation: the median of the posterior of age given every
visit's clinical and imaging values under the simulator's own equations
(hamnet_jax/cohort/interactions.py), with its own priors and noise levels.

To be a bound, the posterior is handed more than the features hold: each subject's
polygenic score, gene x biology and gene x environment carrier status, sex, and how much
older the markers look (smoking or inactivity in carriers), all exact, also where genotypes
or lifestyle are missing. Only the marker noise and the latents the markers read (baseline
age and the biological-age offset d) are left to infer: b_v = a0 + t_v + d', a0 ~ U(40, 75),
d' ~ N(1.2 (h - mean h), 2.4^2); each clinical marker's standardized value is its response
to z = (b - 55) / 10 plus N(0, 0.8^2), each imaging value its curve plus N(0, 1.5^2).
The likelihood is evaluated on a grid of baseline biological age u = a0 + d' (0.2 y), the
posterior of a0 on a grid of 0.1 y; the prediction is its median plus the last visit's time
(MAE's optimum). No predictor of the features has a lower expected MAE, so the oracle's
gap that a model can close is (GBM - this bound) at most.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from hamnet_jax.cohort import interactions  # noqa: E402
from hamnet_jax.cohort.default import COHORT_BLOCK  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "interactions_bayes_bound.json"
FRESH_SEED = 1000  # bench_model_quality's test cohorts: seed 1000 + s
U_GRID = np.arange(15.0, 110.0, 0.2)  # baseline biological age (a grid of 0.1 gave the same MAE to 0.002)
A_GRID = np.arange(40.0, 75.0 + 1e-9, 0.1)  # baseline age: U(40, 75)
CLINICAL_NOISE, IMAGING_NOISE, D_SD = 0.8, 1.5, 2.4


def draw_with_latents(n: int, seed: int) -> dict:
    """The cohort `generate_interactions_cohort(n, seed)` draws (one block), with the latents
    its equations use, captured from the draw itself."""
    if n > COHORT_BLOCK:
        raise ValueError(f"--subjects: at most {COHORT_BLOCK} (one block), got {n}")
    captured: dict = {}
    clinical, polygenic = interactions._clinical, interactions._polygenic

    def clinical_spy(rng, z_seen, sex, gxb, w):
        captured.update(z_seen=z_seen, sex=sex, gxb=gxb)
        return clinical(rng, z_seen, sex, gxb, w)

    def polygenic_spy(snps, w):
        captured["h"] = polygenic(snps, w)
        return captured["h"]

    interactions._clinical, interactions._polygenic = clinical_spy, polygenic_spy
    try:
        w = interactions._world(interactions.DEFAULT_DIMS)
        subj, bio, _, obs = interactions._draw(np.random.default_rng(seed), n, w, interactions.DEFAULT_DIMS)
    finally:
        interactions._clinical, interactions._polygenic = clinical, polygenic
    z = (bio - 55.0) / 10.0
    return {**captured, **subj, **obs, "w": w, "looks_older": 10.0 * (captured["z_seen"] - z)[:, 0]}


def log_likelihood(c: dict, rows: np.ndarray) -> np.ndarray:
    """log p(markers | u) on `U_GRID` for the subjects `rows`: [len(rows), len(U_GRID)]."""
    w = c["w"]
    out = np.zeros((rows.size, U_GRID.size))
    for v in range(c["t"].shape[1]):
        present = v < c["n_visits"][rows]
        b = U_GRID[None, :] + c["t"][rows, v][:, None]  # biological age at visit v
        z = (b - 55.0) / 10.0
        response = interactions.marker_response(z + c["looks_older"][rows][:, None] / 10.0, w)  # [n, U, K]
        slope = interactions.marker_slopes(c["gxb"][rows], w)  # [n, K]
        seen = (c["clin"][rows, v] / w["clin_center"] - 1.0) / 0.1 - c["sex"][rows][:, None] * w["clin_sex"]
        resid = seen[:, None, :] - slope[:, None, :] * response  # [n, U, K]
        ok = np.isfinite(seen) & present[:, None]
        out -= 0.5 * np.where(ok[:, None, :], (resid / CLINICAL_NOISE) ** 2, 0.0).sum(-1)
        curves = interactions.imaging_curves(z, w)  # [n, U, I]
        img_seen = (c["img"][rows, v] / w["img_center"] - 1.0) / 0.1
        img_ok = np.isfinite(img_seen) & present[:, None]
        img_resid = np.where(img_ok[:, None, :], img_seen[:, None, :] - curves, 0.0)
        out -= 0.5 * ((img_resid / IMAGING_NOISE) ** 2).sum(-1)
    return out


def posterior_median_age(c: dict, rows: np.ndarray) -> np.ndarray:
    """Median of p(a0 | markers) plus the last visit's time, for the subjects `rows`."""
    loglik = log_likelihood(c, rows)
    lik = np.exp(loglik - loglik.max(axis=1, keepdims=True))  # [n, U]
    mu = 1.2 * (c["h"][rows] - c["h"].mean())  # prior mean of d' = u - a0
    # p(a0 | x) = p(a0) sum_u lik(u) N(u - a0; mu, D_SD^2)
    offset = U_GRID[None, :, None] - A_GRID[None, None, :] - mu[:, None, None]  # [n, U, A]
    post = np.einsum("nu,nua->na", lik, np.exp(-0.5 * (offset / D_SD) ** 2))
    cdf = np.cumsum(post, axis=1)
    cdf /= cdf[:, -1:]
    a0 = np.array([np.interp(0.5, cdf[i], A_GRID) for i in range(rows.size)])
    last = c["t"][rows, c["n_visits"][rows] - 1]
    return a0 + last


def bound(seed: int, subjects: int, chunk: int = 50) -> dict:
    c = draw_with_latents(subjects, seed)
    truth = c["age"][np.arange(subjects), c["n_visits"] - 1]
    predicted = np.concatenate([posterior_median_age(c, np.arange(s, min(s + chunk, subjects)))
                                for s in range(0, subjects, chunk)])
    return {"seed": seed, "subjects": subjects, "mae": float(np.mean(np.abs(predicted - truth))),
            "rmse": float(np.sqrt(np.mean((predicted - truth) ** 2)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--subjects", type=int, default=6000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    for s in args.seeds:
        rows.append({"train_seed": s, **bound(FRESH_SEED + s, args.subjects)})
        print(f"test cohort seed {FRESH_SEED + s}: Bayes-optimal MAE from the features "
              f"(with exact genotypes and lifestyle) {rows[-1]['mae']:.3f}", flush=True)
    maes = [r["mae"] for r in rows]
    write_json_atomic(args.out, {"per_seed": rows, "median_mae": float(np.median(maes)),
                                 "min_mae": float(min(maes)), "max_mae": float(max(maes))})
    print(f"median {np.median(maes):.3f} [{min(maes):.3f}-{max(maes):.3f}]; wrote {args.out}")


if __name__ == "__main__":
    main()
