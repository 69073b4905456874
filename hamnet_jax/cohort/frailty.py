"""A second synthetic cohort with other generative assumptions: ageing as accumulated deficits.

It guards against tuning to one simulator (`cohort/default.py`). What differs:

1. Older people, fewer visits: baseline age ~ Uniform(45, 80); 1 or 2 visits (0.7 / 0.3),
   4-8 years apart.
2. Genetics: 20 causal SNPs with large effects, half of them dominant (any copy counts),
   and an epistatic pair; the longevity polygenic scores are weaker readouts of it.
3. Biological age deviation d = 2.2 h + 1.2 h m + 1.5 s + N(0, 2.2^2) years: h genetic,
   m a metabolic latent, s a step-shaped lifestyle score (thresholds, not smooth terms);
   no personal pace.
4. Clinical markers respond to z = (b - 60) / 10 through hinges (softplus(k (z - τ)) with a
   per-marker threshold τ: a marker stays flat until its deficit starts), steep logistic
   steps, or inverted U's; visit noise grows with z (older subjects are noisier).
5. Imaging: three factors in z, z^2 and sex with heavy-tailed (Student t, 4 dof) noise.
6. Missingness that depends on the values (missing not at random): imaging is measured
   more often in biologically younger subjects (P = sigmoid(-z - 0.5)), a clinical value
   above its marker's 90th percentile is missing 40% of the time, genetics is absent for
   20% of subjects, lifestyle at 10% of visits.
7. Outcome: death within 10 years, logistic in biological age (not a Gompertz hazard).

Same columns and schema layout as the default cohort (`subject_id`, `visit`,
`years_since_baseline`, `age` the target, `bio_age`, `died`, then the features), so every
command takes either. Loadings come from a fixed world seed: cohorts drawn with different
seeds are samples of the same population.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from hamnet_jax.cohort import features as names
from hamnet_jax.cohort.default import COHORT_BLOCK, CohortDims, drawn_blocks, joined_blocks

FRAILTY_WORLD_SEED = 20261129


def _prs_count(dims: CohortDims) -> int:
    return min(len(names.PRS_TRAITS), dims.genetic)


def _world(dims: CohortDims) -> dict[str, Any]:
    rng = np.random.default_rng(FRAILTY_WORLD_SEED)
    k, n_snp = dims.clinical, dims.genetic - _prs_count(dims)
    causal = rng.choice(n_snp, size=min(20, n_snp), replace=False)
    return dict(
        clin_shape=rng.integers(0, 3, k),  # 0 hinge, 1 logistic step, 2 inverted U
        clin_threshold=rng.uniform(-1.0, 1.5, k),
        clin_effect=rng.uniform(0.4, 1.2, k) * rng.choice([-1.0, 1.0], k),
        clin_sex=rng.normal(0, 0.4, k),
        clin_metabolic=rng.normal(0, 0.6, k) * (rng.random(k) < 0.4),
        clin_center=rng.uniform(1.0, 100.0, k),
        img_loadings=rng.normal(0, 1, (3, dims.imaging)) * np.array([0.5, 0.25, 0.5])[:, None],
        img_center=rng.uniform(0.5, 50.0, dims.imaging),
        snp_freq=rng.uniform(0.05, 0.5, n_snp),
        snp_causal=causal,
        snp_dominant=rng.random(causal.size) < 0.5,
        snp_beta=rng.normal(0, 1, causal.size),
        life_loadings=rng.normal(0, 0.6, (2, dims.lifestyle_numeric)),
    )


def _genetic_score(snps: np.ndarray, w: dict[str, Any]) -> np.ndarray:
    dosage = snps[:, w["snp_causal"]]
    coded = np.where(w["snp_dominant"], (dosage >= 1).astype(float), dosage)
    h = (coded - coded.mean(0)) @ w["snp_beta"]
    if coded.shape[1] >= 2:
        h = h + 1.5 * (dosage[:, 0] >= 1) * (dosage[:, 1] >= 1)  # an epistatic pair
    return (h - h.mean()) / (h.std() + 1e-9) if len(h) > 1 else h * 0.0


def _clinical(rng: np.random.Generator, z: np.ndarray, sex: np.ndarray, metabolic: np.ndarray,
              w: dict[str, Any]) -> np.ndarray:
    shape, tau = w["clin_shape"], w["clin_threshold"]
    x = z[..., None]
    hinge = np.logaddexp(0.0, 3.0 * (x - tau)) / 3.0
    step = 1.0 / (1.0 + np.exp(-6.0 * (x - tau)))
    bump = 1.0 - (x - tau) ** 2 / 2.0
    response = np.where(shape == 0, hinge, np.where(shape == 1, step, bump))
    noise_sd = 0.6 + 0.25 * np.clip(x + 1.0, 0.0, None)
    values = (w["clin_effect"] * response + sex[:, None, None] * w["clin_sex"]
              + metabolic[:, None, None] * w["clin_metabolic"] + rng.normal(0, 1, response.shape) * noise_sd)
    return w["clin_center"] * (1 + 0.1 * values)


DEFAULT_DIMS = CohortDims()


def generate_frailty_cohort(n_subjects: int, seed: int = 0,
                            dims: CohortDims = DEFAULT_DIMS) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Draw the deficit-accumulation cohort; returns (long frame, schema dict) like
    `generate_cohort`. Same seed, same data."""
    return joined_blocks(frailty_blocks(n_subjects, seed, dims))


def frailty_blocks(n_subjects: int, seed: int = 0, dims: CohortDims = DEFAULT_DIMS,
                   block: int = COHORT_BLOCK) -> Iterator[tuple[pd.DataFrame, dict[str, Any]]]:
    """The deficit-accumulation cohort `block` subjects at a time (`drawn_blocks`). Its
    missing-not-at-random threshold (each clinical column's 90th percentile) is a block's:
    a cohort of up to `block` subjects is the one drawn whole."""
    return drawn_blocks(n_subjects, seed, dims, block, _world, _draw)


def _draw(rng: np.random.Generator, n: int, w: dict[str, Any], dims: CohortDims) -> tuple:
    """One block of `n` subjects, drawn from `rng` in a fixed order."""
    v_max = 2
    sex = (rng.random(n) < 0.5).astype(float)
    n_visits = rng.choice([1, 2], size=n, p=[0.7, 0.3])
    t = np.concatenate([np.zeros((n, 1)), rng.uniform(4.0, 8.0, (n, 1))], axis=1)
    age = rng.uniform(45.0, 80.0, n)[:, None] + t

    snps = rng.binomial(2, w["snp_freq"], size=(n, w["snp_freq"].size)).astype(float)
    h = _genetic_score(snps, w)
    metabolic = rng.normal(0, 1, n)
    smoking = rng.choice(3, size=n, p=[0.5, 0.35, 0.15])
    alcohol = rng.choice(np.arange(1, 7), size=n)
    diet, education = rng.choice(4, size=n), rng.choice(np.arange(1, 6), size=n)
    employment = rng.choice(4, size=n, p=[0.5, 0.35, 0.1, 0.05])
    activity = rng.normal(0, 1, n)
    sleep = np.clip(rng.normal(7.0, 1.2, n), 3.0, 12.0)
    s = (1.0 * (smoking == 2) + 1.0 * (activity < -1.0) + 0.8 * (sleep < 5.5) + 0.6 * (alcohol == 6)
         - 0.5 * (education >= 4))
    d = 2.2 * h + 1.2 * h * metabolic + 1.5 * (s - s.mean()) + rng.normal(0, 2.2, n)
    bio = age + d[:, None]
    z = (bio - 60.0) / 10.0

    clin = _clinical(rng, z, sex, metabolic, w)
    factors = np.stack([z, z**2 - 1.0, np.broadcast_to(sex[:, None], z.shape)], axis=-1)
    heavy_tailed = 0.5 * rng.standard_t(4, (n, v_max, dims.imaging))
    img = w["img_center"] * (1 + 0.1 * (factors @ w["img_loadings"] + heavy_tailed))
    life_latent = np.stack([activity, sleep - 7.0], axis=1)
    life_num = (life_latent @ w["life_loadings"])[:, None, :] + rng.normal(0, 0.4, (n, v_max, dims.lifestyle_numeric))
    life_num[..., 0] = np.exp(7.2 + 0.8 * activity)[:, None] * np.exp(rng.normal(0, 0.1, (n, v_max)))
    if dims.lifestyle_numeric > 1:
        life_num[..., 1] = np.round(sleep[:, None] + rng.normal(0, 0.3, (n, v_max)), 1)

    # missing not at random
    high = clin > np.quantile(clin, 0.9, axis=(0, 1))
    clin = np.where(high & (rng.random(clin.shape) < 0.4), np.nan, clin)
    img_present = rng.random((n, v_max)) < 1.0 / (1.0 + np.exp(z + 0.5))
    img[~img_present] = np.nan
    prs = rng.normal(0, 1, (n, _prs_count(dims)))  # weak readouts of h: 0.3 here, 0.6 in the default cohort
    for j, trait in enumerate(names.PRS_TRAITS[:prs.shape[1]]):
        if trait in ("longevity", "parental_lifespan"):
            prs[:, j] = -0.3 * h + 0.95 * prs[:, j]
    genetic = np.concatenate([prs, snps], axis=1)
    genetic[rng.random(n) < 0.2] = np.nan
    genetic = np.broadcast_to(genetic[:, None, :], (n, v_max, genetic.shape[1]))
    life_present = rng.random((n, v_max)) >= 0.1
    life_num[~life_present] = np.nan
    cat_values = np.stack([sex, smoking, alcohol, diet, education, employment], axis=1).astype(float)
    cats = np.broadcast_to(cat_values[:, None, :], (n, v_max, cat_values.shape[1])).copy()
    cats[~life_present] = np.nan
    cats[..., 0] = sex[:, None]  # sex is always known

    bio_last = bio[np.arange(n), n_visits - 1]
    died = (rng.random(n) < 1.0 / (1.0 + np.exp(-(bio_last - 85.0) / 5.0))).astype(np.int64)
    subj = {"t": t, "n_visits": n_visits, "age": age}
    obs = {"clin": clin, "img": img, "genetic": genetic, "life_num": life_num, "cats": cats}
    return subj, bio, died, obs
