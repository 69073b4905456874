"""The synthetic cohort: UK Biobank-style multimodal data with a known biological age.

Generative model (one "world" of feature loadings, fixed by `WORLD_SEED`, so cohorts drawn
with different seeds are samples of the same population):

1. Subject i: sex ~ Bernoulli(0.5); baseline age a0 ~ Uniform(40, 70); 1-4 visits with
   probabilities (0.4, 0.3, 0.2, 0.1), separated by gaps ~ Uniform(1.5, 5) years.
2. Genetics: 990 SNP dosages G_ij ~ Binomial(2, p_j), p_j ~ Uniform(0.05, 0.5); a genetic
   ageing score g = standardized sum of 60 causal effects; 10 polygenic scores, of which
   `prs_longevity` and `prs_parental_lifespan` are noisy readouts of g.
3. Lifestyle: smoking (never / former / current), alcohol frequency, diet pattern,
   education, employment, physical activity (log-normal MET), sleep, diet items, ...
   A lifestyle ageing score L is a non-linear function of them (current smoking, pack
   years, inactivity, U-shaped sleep, heavy alcohol, a smoking x inactivity interaction).
4. Age deviation d = 1.8 g + L + N(0, 1.8^2) years, pace r ~ N(0, 0.08) years/year.
   Biological age at a visit of chronological age a_v: b_v = a_v + d + r (a_v - a0).
5. Observations, with z_v = (b_v - 55) / 10:
   * clinical (42 named markers + NMR metabolites): marker k = a_k f_k(z_v) + sex shift
     + loading on two subject-level nuisance factors (metabolic, inflammatory)
     + N(0, 1) visit noise, with f_k one of linear, quadratic, saturating (tanh) or
     exponential; mapped to realistic units, skewed markers on the log scale.
   * imaging (brain, DXA, retina, cardiac IDPs): a low-rank model, 8 factors of which the
     first is z_v (the brain-age signal) and the second sex, plus N(0, 0.6^2) noise.
   * lifestyle numeric values drift slightly between visits; categoricals are fixed.
6. Missingness: clinical absent at 5% of visits and each marker missing at a per-marker
   rate in [0, 15%]; imaging only at 10% of first visits and 35% of later visits, with
   whole blocks (e.g. retina) missing; genetics absent for 8% of subjects, 1% missing
   calls; lifestyle absent at 5% of visits, 5% missing entries. Missing values are NaN.
7. Mortality: a Gompertz hazard h(x) = 5.2e-5 exp(0.085 x) on biological age, followed
   for 12 years from the last visit; `died` ~ Bernoulli(1 - exp(-cumulative hazard)).

The file has one row per subject and visit: `subject_id`, `visit`, `years_since_baseline`,
`age` (chronological age at the visit, the usual training target), `bio_age` (the latent),
`died`, then the features. Same seed, same data on every machine (numpy PCG64).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hamnet_jax.cohort import features as names

WORLD_SEED = 20240917
DEFAULT_SUBJECTS = 6000
COHORT_BLOCK = 20_000  # subjects drawn (and written) at a time: ~2 GB at the default widths


@dataclass(frozen=True)
class CohortDims:
    """Feature widths of the synthetic cohort (the modality widths of its schema)."""

    clinical: int = 96
    imaging: int = 512
    genetic: int = 1000
    lifestyle_numeric: int = 40


def _world(dims: CohortDims) -> dict[str, Any]:
    """Feature loadings shared by every cohort: the fixed population model."""
    rng = np.random.default_rng(WORLD_SEED)
    k = dims.clinical
    named = min(k, len(names.CLINICAL_MARKERS))
    effect = np.concatenate([rng.uniform(0.25, 0.6, named), rng.uniform(0.05, 0.3, k - named)])
    effect *= rng.choice([-1.0, 1.0], k)
    n_snp = dims.genetic - min(len(names.PRS_TRAITS), dims.genetic)
    causal = rng.choice(n_snp, size=min(60, n_snp), replace=False)
    return dict(
        clin_effect=effect,
        clin_shape=rng.integers(0, 4, k),  # 0 linear, 1 quadratic, 2 tanh, 3 exp
        clin_sex=rng.normal(0, 0.3, k),
        clin_nuisance=rng.normal(0, 0.5, (2, k)) * (rng.random((2, k)) < 0.5),
        clin_missing=rng.uniform(0.0, 0.15, k),
        clin_center=rng.uniform(1.0, 100.0, k),
        img_loadings=rng.normal(0, 1, (8, dims.imaging)) * np.array([0.45, 0.6, 0.4, 0.4, 0.3, 0.3, 0.2, 0.2])[:, None],
        img_center=rng.uniform(0.5, 50.0, dims.imaging),
        snp_freq=rng.uniform(0.05, 0.5, n_snp),
        snp_causal=causal,
        snp_beta=rng.normal(0, 1, causal.size),
        life_loadings=rng.normal(0, 0.5, (3, dims.lifestyle_numeric)),
    )


def _clinical_response(z: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """f_k(z) for each marker's response shape, each roughly unit scale over ages 40-90."""
    out = np.where(shape == 0, z, 0.0)
    out = np.where(shape == 1, 0.5 * (z + 1.0) ** 2 - 1.0, out)
    out = np.where(shape == 2, 1.5 * np.tanh(z), out)
    return np.where(shape == 3, np.exp(0.6 * z) - 1.0, out)


def _subjects(rng: np.random.Generator, n: int, v_max: int) -> dict[str, np.ndarray]:
    """1. sex, baseline age, visit counts and times."""
    sex = (rng.random(n) < 0.5).astype(float)
    age0 = rng.uniform(40.0, 70.0, n)
    n_visits = rng.choice(np.arange(1, v_max + 1), size=n, p=[0.4, 0.3, 0.2, 0.1])
    gaps = np.concatenate([np.zeros((n, 1)), rng.uniform(1.5, 5.0, (n, v_max - 1))], axis=1)
    t = np.cumsum(gaps, axis=1)  # [n, V] years since baseline
    return {"sex": sex, "n_visits": n_visits, "t": t, "age": age0[:, None] + t}


def _genetics(rng: np.random.Generator, n: int, w: dict[str, Any], dims: CohortDims) -> dict[str, np.ndarray]:
    """2. SNP dosages, the standardized genetic score g, polygenic scores."""
    snps = rng.binomial(2, w["snp_freq"], size=(n, w["snp_freq"].size)).astype(float)
    centred = snps[:, w["snp_causal"]] - 2 * w["snp_freq"][w["snp_causal"]]
    g = centred @ w["snp_beta"]
    g = (g - g.mean()) / (g.std() + 1e-9) if n > 1 else g * 0.0
    n_prs = dims.genetic - snps.shape[1]
    prs = rng.normal(0, 1, (n, n_prs))
    for j, trait in enumerate(names.PRS_TRAITS[:n_prs]):
        if trait in ("longevity", "parental_lifespan"):
            prs[:, j] = -0.6 * g + 0.8 * prs[:, j]
    return {"snps": snps, "g": g, "prs": prs}


def _lifestyle(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """3. lifestyle categories and numerics, and the non-linear lifestyle score."""
    smoking = rng.choice(3, size=n, p=[0.55, 0.33, 0.12])
    alcohol = rng.choice(np.arange(1, 7), size=n, p=[0.2, 0.25, 0.25, 0.12, 0.1, 0.08])
    diet = rng.choice(4, size=n)
    education = rng.choice(np.arange(1, 6), size=n)
    employment = rng.choice(4, size=n, p=[0.55, 0.3, 0.1, 0.05])
    log_met = rng.normal(7.2, 0.8, n)
    sleep = np.clip(rng.normal(7.0, 1.1, n), 3.0, 12.0)
    pack_years = np.where(smoking > 0, rng.gamma(2.0, 8.0, n) * (1 + (smoking == 2)), 0.0)
    inactivity = -(log_met - 7.2) / 0.8
    score = (
        2.2 * (smoking == 2) + 0.8 * (smoking == 1) + 0.04 * pack_years
        + 0.9 * inactivity + 0.5 * (sleep - 7.0) ** 2 / 1.2 + 1.2 * (alcohol == 1)
        + 0.6 * (diet == 3) - 0.3 * (education - 3) + 0.9 * (smoking == 2) * np.maximum(inactivity, 0)
    )
    return {"smoking": smoking, "alcohol": alcohol, "diet": diet, "education": education,
            "employment": employment, "log_met": log_met, "sleep": sleep, "pack_years": pack_years,
            "inactivity": inactivity, "score": score - score.mean()}


def _observations(rng: np.random.Generator, n: int, v_max: int, w: dict[str, Any], dims: CohortDims,
                  subj: dict, gen: dict, life: dict, z: np.ndarray) -> dict[str, np.ndarray]:
    """5. every modality observed from the latent (before missingness)."""
    sex, t = subj["sex"], subj["t"]
    nuisance = rng.normal(0, 1, (n, 2))
    clin = (
        w["clin_effect"] * _clinical_response(z[..., None], w["clin_shape"])
        + sex[:, None, None] * w["clin_sex"]
        + (nuisance @ w["clin_nuisance"])[:, None, :]
        + rng.normal(0, 1, (n, v_max, dims.clinical))
    )
    clin_cols = names.clinical_names(dims.clinical)
    log_scale = np.array([c in names.LOG_SCALE_MARKERS for c in clin_cols])
    clin = np.where(log_scale, w["clin_center"] * np.exp(0.3 * clin), w["clin_center"] * (1 + 0.1 * clin))

    img_factors = np.concatenate(
        [z[..., None], np.broadcast_to(sex[:, None, None], (n, v_max, 1)),
         np.broadcast_to(rng.normal(0, 1, (n, 1, 6)), (n, v_max, 6))], axis=-1
    )
    img = img_factors @ w["img_loadings"] + rng.normal(0, 0.6, (n, v_max, dims.imaging))
    img = w["img_center"] * (1 + 0.1 * img)

    genetic = np.concatenate([gen["prs"], gen["snps"]], axis=1)

    life_latent = np.stack([life["inactivity"], life["sleep"] - 7.0, rng.normal(0, 1, n)], axis=1)
    life_num = life_latent @ w["life_loadings"]
    life_num = life_num[:, None, :] + rng.normal(0, 0.3, (n, v_max, dims.lifestyle_numeric))
    life_num[..., 0] = np.exp(life["log_met"])[:, None] * np.exp(rng.normal(0, 0.1, (n, v_max)))
    if dims.lifestyle_numeric > 1:
        life_num[..., 1] = np.round(life["sleep"][:, None] + rng.normal(0, 0.3, (n, v_max)), 1)
    if dims.lifestyle_numeric > 17:
        life_num[..., 17] = life["pack_years"][:, None] + 0.0 * t
    return {"clin": clin, "img": img, "genetic": genetic, "life_num": life_num}


def _missingness(rng: np.random.Generator, n: int, v_max: int, w: dict[str, Any], dims: CohortDims,
                 obs: dict, sex: np.ndarray, life: dict) -> dict[str, np.ndarray]:
    """6. modality- and feature-level missingness (NaN); categoricals as [n, V, k]."""
    clin, img, genetic, life_num = obs["clin"], obs["img"], obs["genetic"], obs["life_num"]
    img_rate = np.where(np.arange(v_max) == 0, 0.10, 0.35)
    img_present = rng.random((n, v_max)) < img_rate
    gen_present = rng.random(n) >= 0.08
    life_present = rng.random((n, v_max)) >= 0.05
    # every visit measures something: clinical is kept where nothing else was measured
    clin_present = (rng.random((n, v_max)) >= 0.05) | ~(img_present | gen_present[:, None] | life_present)
    clin = np.where(rng.random(clin.shape) < w["clin_missing"], np.nan, clin)
    clin[~clin_present] = np.nan
    img[~img_present] = np.nan
    block_id = np.repeat(np.arange(len(names.IMAGING_BLOCKS)), [b for _, b in names.IMAGING_BLOCKS])
    block_id = np.resize(block_id, dims.imaging)
    block_missing = rng.random((n, v_max, len(names.IMAGING_BLOCKS))) < 0.15
    img[np.take(block_missing, block_id, axis=2)] = np.nan
    genetic = np.where(rng.random(genetic.shape) < 0.01, np.nan, genetic)
    genetic[~gen_present] = np.nan
    genetic = np.broadcast_to(genetic[:, None, :], (n, v_max, genetic.shape[1]))
    life_num = np.where(rng.random(life_num.shape) < 0.05, np.nan, life_num)
    life_num[~life_present] = np.nan
    cat_values = np.stack([sex, life["smoking"], life["alcohol"], life["diet"], life["education"],
                           life["employment"]], axis=1).astype(float)
    cats = np.broadcast_to(cat_values[:, None, :], (n, v_max, cat_values.shape[1])).copy()
    cats = np.where(rng.random(cats.shape) < 0.05, np.nan, cats)
    cats[~life_present] = np.nan
    return {"clin": clin, "img": img, "genetic": genetic, "life_num": life_num, "cats": cats}


def _mortality(rng: np.random.Generator, n: int, bio: np.ndarray, n_visits: np.ndarray) -> np.ndarray:
    """7. death within 12 years from a Gompertz hazard on biological age at the last visit."""
    bio_last = bio[np.arange(n), n_visits - 1]
    a, b, follow = 5.2e-5, 0.085, 12.0
    cum_hazard = a / b * np.exp(b * bio_last) * (np.exp(b * follow) - 1.0)
    return (rng.random(n) < 1.0 - np.exp(-cum_hazard)).astype(np.int64)


def long_frame(seed: int, dims: CohortDims, subj: dict, bio: np.ndarray, died: np.ndarray,
                obs: dict, first_subject: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per real visit, and the schema naming its columns; subjects are numbered
    from `first_subject` (a block of a cohort drawn in blocks)."""
    v_max = subj["t"].shape[1]
    keep = np.arange(v_max)[None, :] < subj["n_visits"][:, None]
    subj_idx, visit_idx = np.nonzero(keep)
    cat_cols = list(names.LIFESTYLE_CATEGORICAL)
    columns: dict[str, Any] = {
        "subject_id": np.char.add("S", np.char.zfill((seed * 10_000_000 + first_subject + subj_idx).astype(str), 8)),
        "visit": visit_idx,
        "years_since_baseline": np.round(subj["t"][keep], 2),
        "age": np.round(subj["age"][keep], 2),
        "bio_age": np.round(bio[keep], 2),
        "died": died[subj_idx],
    }
    blocks = [
        (names.clinical_names(dims.clinical), obs["clin"]), (names.imaging_names(dims.imaging), obs["img"]),
        (names.genetic_names(dims.genetic), obs["genetic"]),
        (names.lifestyle_numeric_names(dims.lifestyle_numeric), obs["life_num"]), (cat_cols, obs["cats"]),
    ]
    frame = pd.DataFrame(columns)
    features = pd.DataFrame(
        np.concatenate([vals[keep] for _, vals in blocks], axis=1).astype(np.float32),
        columns=[c for cols, _ in blocks for c in cols],
    )
    frame = pd.concat([frame, features], axis=1)
    schema = {
        "subject_id": "subject_id",
        "visit": "visit",
        "time": "years_since_baseline",
        "target": "age",
        "outcome": "died",
        "modalities": {
            "clinical": blocks[0][0],
            "imaging": blocks[1][0],
            "genetic": blocks[2][0],
            "lifestyle": blocks[3][0] + cat_cols,
        },
        "categorical": {c: list(levels) for c, levels in names.LIFESTYLE_CATEGORICAL.items()},
        "subject_level": ["genetic"],  # genotypes: one value per subject, repeated at each visit
        "extra": ["bio_age"],
    }
    return frame, schema


def _draw(rng: np.random.Generator, n: int, w: dict[str, Any], dims: CohortDims) -> tuple:
    """Steps 1-7 for `n` subjects, drawn from `rng` in a fixed order."""
    v_max = 4
    subj = _subjects(rng, n, v_max)
    gen = _genetics(rng, n, w, dims)
    life = _lifestyle(rng, n)
    # 4. biological age: genetics + lifestyle + noise, and a personal pace of ageing
    d = 1.8 * gen["g"] + life["score"] + rng.normal(0, 1.8, n)
    pace = rng.normal(0, 0.08, n)
    bio = subj["age"] + d[:, None] + pace[:, None] * subj["t"]
    obs = _observations(rng, n, v_max, w, dims, subj, gen, life, (bio - 55.0) / 10.0)
    obs = _missingness(rng, n, v_max, w, dims, obs, subj["sex"], life)
    died = _mortality(rng, n, bio, subj["n_visits"])
    return subj, bio, died, obs


def drawn_blocks(n_subjects: int, seed: int, dims: CohortDims, block: int, world: Callable[[CohortDims], Any],
                 draw: Callable[..., tuple]) -> Iterator[tuple[pd.DataFrame, dict[str, Any]]]:
    """A synthetic world's cohort `block` subjects at a time (long frame, schema): every block
    shares `world(dims)`; `draw(rng, n, world, dims)` draws a block's (subjects, biological
    age, deaths, observations), block 0 from `seed` (a cohort of one block is the whole
    cohort's draw), block b > 0 from (seed, b)."""
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    w = world(dims)
    for b, start in enumerate(range(0, n_subjects, block)):
        n = min(block, n_subjects - start)
        rng = np.random.default_rng(seed if b == 0 else [seed, b])
        yield long_frame(seed, dims, *draw(rng, n, w, dims), first_subject=start)


def cohort_blocks(n_subjects: int = DEFAULT_SUBJECTS, seed: int = 0, dims: CohortDims = CohortDims(),
                  block: int = COHORT_BLOCK) -> Iterator[tuple[pd.DataFrame, dict[str, Any]]]:
    """The cohort `block` subjects at a time (long frame, schema), so a UK Biobank-sized one
    is written with one block in memory (`drawn_blocks`)."""
    return drawn_blocks(n_subjects, seed, dims, block, _world, _draw)


def joined_blocks(blocks: Iterator[tuple[pd.DataFrame, dict[str, Any]]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One (long frame, schema) of a cohort drawn in blocks."""
    parts = list(blocks)
    frame = parts[0][0] if len(parts) == 1 else pd.concat([p[0] for p in parts], ignore_index=True)
    return frame, parts[0][1]


def generate_cohort(
    n_subjects: int = DEFAULT_SUBJECTS, seed: int = 0, dims: CohortDims = CohortDims()
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Draw a cohort; returns (long frame with one row per subject-visit, schema dict).
    The steps draw from one generator in a fixed order: same seed, same data (cohorts of
    more than `COHORT_BLOCK` subjects: `cohort_blocks`, joined)."""
    return joined_blocks(cohort_blocks(n_subjects, seed, dims))
