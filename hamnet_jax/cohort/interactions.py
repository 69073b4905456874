"""A third synthetic cohort, where interactions, thresholds and saturating curves carry the
signal: the world in which tree ensembles beat neural networks on tabular data (Grinsztajn
et al. 2022, "Why do tree-based models still outperform deep learning on tabular data?").

It is a test of the model, not of one simulator's habits (`cohort/default.py`,
`cohort/frailty.py`). The latent biological age b = age + d, d = 1.2 h + N(0, 2.4^2) (h a
polygenic score), is what an oracle is given; the features read it through:

1. Gene x biology: of the 24 clinical markers that carry b (the others are noise), each
   responds to z = (b - 55) / 10 through a hinge, a logistic step or a saturating curve
   with its own threshold, and for half of them the response is three times as steep in
   carriers of one variant (dominant, ~30%): the same value means another age by genotype.
2. Gene x environment: carriers of a second variant (~35%) who smoke have every informative
   marker shifted as if 8 years older (without being older), and so do carriers who are
   inactive, by 5 years: a reading of age has to discount it, a non-carrier's smoking does
   not move the markers at all.
3. Thresholds: a hinge or step is flat until its marker's threshold (spread over z in
   [-1.5, 1.5]), so each marker tells ages apart in one range only.
4. Saturating imaging: each imaging feature follows tanh((z - z0) / s) (three shared curves
   with per-feature loadings) with much noise: informative in the young range only; imaging
   measured at 60% of visits.
5. Visits: baseline age ~ Uniform(40, 75); 1, 2 or 3 visits (0.5 / 0.3 / 0.2), 3-6 years
   apart. Missing at random: 5% of clinical values, genetics for 10% of subjects,
   lifestyle at 10% of visits. Outcome: death within 10 years, logistic in b.

Same columns and schema layout as the other cohorts (`subject_id`, `visit`,
`years_since_baseline`, `age` the target, `bio_age` the latent, `died`, then the features),
so every command takes it; `hamnet cohort --generator interactions`. Loadings come from a
fixed world seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from hamnet_jax.cohort import features as names
from hamnet_jax.cohort.default import COHORT_BLOCK, CohortDims, drawn_blocks, joined_blocks

INTERACTIONS_WORLD_SEED = 20261207
V_MAX = 3
INFORMATIVE = 24  # clinical markers that carry biological age (the first ones; the rest are noise)
GXE_YEARS = {"smoking": 8.0, "inactivity": 5.0}  # how much older a carrier's markers look


def _prs_count(dims: CohortDims) -> int:
    return min(len(names.PRS_TRAITS), dims.genetic)


def _world(dims: CohortDims) -> dict[str, Any]:
    rng = np.random.default_rng(INTERACTIONS_WORLD_SEED)
    k, n_snp = dims.clinical, dims.genetic - _prs_count(dims)
    picked = rng.choice(n_snp, size=min(22, n_snp), replace=False)
    return dict(
        clin_shape=rng.integers(0, 3, k),  # 0 hinge, 1 logistic step, 2 saturating (tanh)
        clin_threshold=rng.uniform(-1.5, 1.5, k),
        clin_effect=rng.uniform(0.6, 1.2, k) * rng.choice([-1.0, 1.0], k) * (np.arange(k) < INFORMATIVE),
        clin_by_genotype=rng.random(k) < 0.5,  # three times as steep in carriers of the gene x biology variant
        clin_sex=rng.normal(0, 0.4, k),
        clin_center=rng.uniform(1.0, 100.0, k),
        img_loadings=rng.normal(0, 1, (3, dims.imaging)) * np.array([0.6, 0.4, 0.3])[:, None],
        img_curves=np.array([[-0.5, 0.8], [0.3, 0.6], [1.0, 1.2]]),  # (z0, scale) of each tanh curve
        img_center=rng.uniform(0.5, 50.0, dims.imaging),
        snp_freq=rng.uniform(0.05, 0.5, n_snp),
        snp_gxe=picked[0],  # the risk variant whose carriers pay for smoking and inactivity
        snp_gxb=picked[1],  # the variant that doubles some markers' slopes
        snp_polygenic=picked[2:],
        snp_beta=rng.normal(0, 1, picked.size - 2),
        life_loadings=rng.normal(0, 0.6, (2, dims.lifestyle_numeric)),
    )


def _polygenic(snps: np.ndarray, w: dict[str, Any]) -> np.ndarray:
    dosage = snps[:, w["snp_polygenic"]]
    h = (dosage - 2 * w["snp_freq"][w["snp_polygenic"]]) @ w["snp_beta"]
    return h / (np.sqrt(np.sum(w["snp_beta"] ** 2 * 2 * w["snp_freq"][w["snp_polygenic"]]
                               * (1 - w["snp_freq"][w["snp_polygenic"]]))) + 1e-9)


def marker_response(z_seen: np.ndarray, w: dict[str, Any]) -> np.ndarray:
    """[..., markers]: each clinical marker's response (hinge, logistic step or tanh past its
    threshold) to `z_seen`, the biological age as the markers show it, before slope and noise."""
    shape, tau = w["clin_shape"], w["clin_threshold"]
    x = z_seen[..., None]
    hinge = np.logaddexp(0.0, 3.0 * (x - tau)) / 3.0
    step = 1.0 / (1.0 + np.exp(-5.0 * (x - tau)))
    saturating = np.tanh(x - tau)
    return np.where(shape == 0, hinge, np.where(shape == 1, step, saturating))


def marker_slopes(gxb: np.ndarray, w: dict[str, Any]) -> np.ndarray:
    """[subjects, markers]: each marker's slope, three times as steep in gene x biology carriers."""
    return w["clin_effect"] * (1.0 + 2.0 * w["clin_by_genotype"] * gxb[:, None])


def imaging_curves(z: np.ndarray, w: dict[str, Any]) -> np.ndarray:
    """[..., imaging features]: the noiseless imaging values (in units of 10% of their centre)
    at `z`: three tanh curves saturating in z, with per-feature loadings."""
    z0, scale = w["img_curves"][:, 0], w["img_curves"][:, 1]
    return np.tanh((z[..., None] - z0) / scale) @ w["img_loadings"]


def _clinical(rng: np.random.Generator, z_seen: np.ndarray, sex: np.ndarray, gxb: np.ndarray,
              w: dict[str, Any]) -> np.ndarray:
    """Marker values from `z_seen`: the biological age as the markers show it (gene x
    environment shifts included)."""
    response = marker_response(z_seen, w)
    values = marker_slopes(gxb, w)[:, None] * response + sex[:, None, None] * w["clin_sex"] + \
        rng.normal(0, 0.8, response.shape)
    return w["clin_center"] * (1 + 0.1 * values)


def _imaging(rng: np.random.Generator, z: np.ndarray, w: dict[str, Any], width: int) -> np.ndarray:
    curves = imaging_curves(z, w)  # (n, visits, width)
    noise = rng.normal(0, 1.5, z.shape + (width,))
    return w["img_center"] * (1 + 0.1 * (curves + noise))


DEFAULT_DIMS = CohortDims()


def interaction_variant_columns(dims: CohortDims = DEFAULT_DIMS) -> dict[str, int]:
    """Where the gene x environment and gene x biology variants sit among the genetic
    modality's columns (after the polygenic scores): what an analysis of the world's
    interactions groups subjects by."""
    world, offset = _world(dims), _prs_count(dims)
    return {"gene_x_environment": offset + int(world["snp_gxe"]), "gene_x_biology": offset + int(world["snp_gxb"])}


def generate_interactions_cohort(n_subjects: int, seed: int = 0,
                                 dims: CohortDims = DEFAULT_DIMS) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Draw the interaction cohort; returns (long frame, schema dict) like `generate_cohort`.
    Same seed, same data."""
    return joined_blocks(interactions_blocks(n_subjects, seed, dims))


def interactions_blocks(n_subjects: int, seed: int = 0, dims: CohortDims = DEFAULT_DIMS,
                        block: int = COHORT_BLOCK) -> Iterator[tuple[pd.DataFrame, dict[str, Any]]]:
    """The interaction cohort `block` subjects at a time (`drawn_blocks`)."""
    return drawn_blocks(n_subjects, seed, dims, block, _world, _draw)


def _draw(rng: np.random.Generator, n: int, w: dict[str, Any], dims: CohortDims) -> tuple:
    """One block of `n` subjects, drawn from `rng` in a fixed order."""
    sex = (rng.random(n) < 0.5).astype(float)
    n_visits = rng.choice([1, 2, 3], size=n, p=[0.5, 0.3, 0.2])
    gaps = rng.uniform(3.0, 6.0, (n, V_MAX - 1))
    t = np.concatenate([np.zeros((n, 1)), np.cumsum(gaps, axis=1)], axis=1)
    age = rng.uniform(40.0, 75.0, n)[:, None] + t

    snps = rng.binomial(2, w["snp_freq"], size=(n, w["snp_freq"].size)).astype(float)
    h = _polygenic(snps, w)
    gxe = (snps[:, w["snp_gxe"]] >= 1).astype(float)
    gxb = (snps[:, w["snp_gxb"]] >= 1).astype(float)
    metabolic = rng.normal(0, 1, n)
    smoking = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    alcohol = rng.choice(np.arange(1, 7), size=n)
    diet, education = rng.choice(4, size=n), rng.choice(np.arange(1, 6), size=n)
    employment = rng.choice(4, size=n, p=[0.5, 0.35, 0.1, 0.05])
    activity = rng.normal(0, 1, n)
    sleep = np.clip(rng.normal(7.0, 1.2, n), 3.0, 12.0)
    d = 1.2 * h + rng.normal(0, 2.4, n)
    bio = age + (d - d.mean())[:, None]
    z = (bio - 55.0) / 10.0
    looks_older = gxe * (GXE_YEARS["smoking"] * (smoking == 2) + GXE_YEARS["inactivity"] * (activity < -0.5))

    clin = _clinical(rng, z + looks_older[:, None] / 10.0, sex, gxb, w)
    img = _imaging(rng, z, w, dims.imaging)
    life_latent = np.stack([activity, sleep - 7.0], axis=1)
    life_num = (life_latent @ w["life_loadings"])[:, None, :] + rng.normal(0, 0.4, (n, V_MAX, dims.lifestyle_numeric))
    life_num[..., 0] = np.exp(7.2 + 0.8 * activity)[:, None] * np.exp(rng.normal(0, 0.1, (n, V_MAX)))
    if dims.lifestyle_numeric > 1:
        life_num[..., 1] = np.round(sleep[:, None] + rng.normal(0, 0.3, (n, V_MAX)), 1)
    if dims.lifestyle_numeric > 2:
        life_num[..., 2] = 25.0 + 3.0 * metabolic[:, None] + rng.normal(0, 1.0, (n, V_MAX))

    clin = np.where(rng.random(clin.shape) < 0.05, np.nan, clin)
    img[rng.random((n, V_MAX)) >= 0.6] = np.nan
    prs = rng.normal(0, 1, (n, _prs_count(dims)))
    for j, trait in enumerate(names.PRS_TRAITS[:prs.shape[1]]):
        if trait in ("longevity", "parental_lifespan"):
            prs[:, j] = -0.5 * h + 0.85 * prs[:, j]
    genetic = np.concatenate([prs, snps], axis=1)
    genetic[rng.random(n) < 0.1] = np.nan
    genetic = np.broadcast_to(genetic[:, None, :], (n, V_MAX, genetic.shape[1]))
    life_present = rng.random((n, V_MAX)) >= 0.1
    life_num[~life_present] = np.nan
    cat_values = np.stack([sex, smoking, alcohol, diet, education, employment], axis=1).astype(float)
    cats = np.broadcast_to(cat_values[:, None, :], (n, V_MAX, cat_values.shape[1])).copy()
    cats[~life_present] = np.nan
    cats[..., 0] = sex[:, None]  # sex is always known

    bio_last = bio[np.arange(n), n_visits - 1]
    died = (rng.random(n) < 1.0 / (1.0 + np.exp(-(bio_last - 80.0) / 5.0))).astype(np.int64)
    subj = {"t": t, "n_visits": n_visits, "age": age}
    obs = {"clin": clin, "img": img, "genetic": genetic, "life_num": life_num, "cats": cats}
    return subj, bio, died, obs
