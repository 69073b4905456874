"""Input and prediction drift against the training data's profile (data/profile.py).

    report = drift_report(profile, new_arrays, schema, new_predictions=None)

Per numeric feature: the population stability index over the training deciles (PSI,
half an observation added per bin) and the two-sample Kolmogorov-Smirnov statistic against the
stored ECDF (201 quantiles), with its asymptotic p-value (scipy's Kolmogorov
distribution at the effective size n m / (n + m)); the missing-rate change. Per
categorical column: PSI over its levels (missing as a level). Per modality: the change in
the share of subjects whose last visit lacks it, with a two-proportion z-test. Like the
profile, the new data contributes each subject's last visit. Predictions: PSI and
KS as for a feature.

Flags (the `DriftThresholds` defaults follow common practice: PSI 0.1 = moderate, 0.2 =
significant shift): a feature drifts when PSI >= `psi` or KS >= `ks_statistic`, either
with its Bonferroni-corrected p-value below `alpha`: an effect size and a significance
both, since small samples give large PSIs by chance and large samples make any KS test
significant; a modality when its absent share changes by >= `absent_change` with p < `alpha`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats

from hamnet_jax.data.arrays import CohortArrays
from hamnet_jax.data.profile import DataProfile, NumericProfile, bin_shares, last_visit_rows
from hamnet_jax.data.schema import Schema
from hamnet_jax.errors import InputError
from hamnet_jax.modalities import MODALITIES
from hamnet_jax.monitoring.ab_statistics import two_proportion_test

SMOOTH = 1e-4


@dataclasses.dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2
    ks_statistic: float = 0.1
    alpha: float = 0.01
    missing_change: float = 0.1
    absent_change: float = 0.1


def psi(expected: np.ndarray, actual: np.ndarray, n_expected: int | None = None,
        n_actual: int | None = None) -> float:
    """Population stability index, sum (a - e) ln(a / e) over bins. Given the sample sizes,
    each bin gets half an observation (Jeffreys smoothing), so an empty bin in a small
    sample does not read as a huge shift; else shares are smoothed by 1e-4."""
    e, a = np.asarray(expected, float), np.asarray(actual, float)
    e = e + (0.5 / n_expected if n_expected else SMOOTH)
    a = a + (0.5 / n_actual if n_actual else SMOOTH)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def psi_p_value(value: float, n_reference: int, n_new: int, bins: int) -> float:
    """Under no drift, PSI / (1/n + 1/m) is asymptotically chi-square with bins - 1 degrees
    of freedom (PSI is a symmetrized KL divergence): small samples give large PSIs by
    chance, and this says how large."""
    return float(stats.chi2.sf(value / (1 / n_reference + 1 / n_new), max(bins - 1, 1)))


def ks_against_quantiles(quantiles: np.ndarray, reference_n: int, x: np.ndarray) -> tuple[float, float]:
    """KS statistic of sample `x` against the step ECDF given by the reference quantiles,
    and its asymptotic p-value at the effective sample size."""
    x = np.sort(x)
    grid = np.unique(np.concatenate([quantiles, x]))
    # the step ECDF the quantiles give: exact at a discrete feature's values, within 0.5% between
    ref = np.clip((np.searchsorted(quantiles, grid, side="right") - 1) / (quantiles.size - 1), 0.0, 1.0)
    new = np.searchsorted(x, grid, side="right") / x.size
    statistic = float(np.max(np.abs(new - ref)))
    n_eff = reference_n * x.size / (reference_n + x.size)
    return statistic, float(stats.kstwobign.sf(statistic * math.sqrt(n_eff)))


def numeric_drift(profile: NumericProfile, values: np.ndarray, names: tuple[str, ...],
                  thresholds: DriftThresholds, tests: int) -> list[dict[str, Any]]:
    rows = []
    for j, name in enumerate(names):
        col = values[:, j]
        x = col[~np.isnan(col)]
        missing = float(1 - x.size / max(col.size, 1))
        row: dict[str, Any] = {"feature": name, "observed": int(x.size), "missing_rate": missing,
                               "reference_missing_rate": float(profile.missing_rate[j]),
                               "psi": math.nan, "psi_p_value": math.nan, "ks_statistic": math.nan,
                               "ks_p_value": math.nan}
        if x.size and profile.observed[j]:
            shares = bin_shares(x, profile.edges[j])
            row["psi"] = psi(profile.shares[j], shares, int(profile.observed[j]), x.size)
            row["psi_p_value"] = min(1.0, psi_p_value(row["psi"], int(profile.observed[j]), x.size,
                                                      int(np.sum((profile.shares[j] > 0) | (shares > 0)))) * tests)
            row["ks_statistic"], p = ks_against_quantiles(profile.quantiles[j], int(profile.observed[j]), x)
            row["ks_p_value"] = min(1.0, p * tests)  # Bonferroni over the features tested
        row["drifted"] = bool((row["psi"] >= thresholds.psi and row["psi_p_value"] < thresholds.alpha) or (
            row["ks_statistic"] >= thresholds.ks_statistic and row["ks_p_value"] < thresholds.alpha))
        row["missingness_drifted"] = abs(missing - row["reference_missing_rate"]) >= thresholds.missing_change
        rows.append(row)
    return rows


def max_psi(report: dict[str, Any]) -> float:
    """The largest finite feature PSI of a drift report (0 when none): what alerts watch."""
    values = [r["psi"] for r in report["features"] if r.get("psi") is not None and math.isfinite(r["psi"])]
    return max(values, default=0.0)


def drift_report(profile: DataProfile, arrays: CohortArrays, schema: Schema,
                 predictions: np.ndarray | None = None, thresholds: DriftThresholds = DriftThresholds()
                 ) -> dict[str, Any]:
    """Every feature's, modality's and (given) the predictions' drift, and what is flagged."""
    names = tuple(c for m in MODALITIES if m in schema.modalities for c in schema.numeric_columns(m))
    if names != profile.numeric_names or tuple(schema.categorical_columns) != profile.categorical_names:
        missing = sorted(set(profile.numeric_names) - set(names))
        extra = sorted(set(names) - set(profile.numeric_names))
        raise InputError(f"drift: the data's columns differ from the run's (missing {missing[:5]}, extra "
                         f"{extra[:5]}); check against a run trained on this schema")
    attended = last_visit_rows(arrays)  # one observation per subject, as the profile holds
    values = np.concatenate([arrays.values[m][attended] for m in MODALITIES
                             if m in schema.modalities and schema.numeric_columns(m)], axis=1)
    return drift_of_rows(profile, values, arrays.categorical[attended], predictions, thresholds)


def drift_of_rows(profile: DataProfile, values: np.ndarray, cats: np.ndarray, predictions: np.ndarray | None = None,
                  thresholds: DriftThresholds = DriftThresholds()) -> dict[str, Any]:
    """`drift_report` on one row per subject (its last visit): `values` [n, F] in the
    profile's numeric column order, `cats` [n, C] its categorical columns (NaN = missing)."""
    names = profile.numeric_names
    if values.shape[1:] != (len(names),) or cats.shape[1:] != (len(profile.categorical_names),):
        raise InputError(f"drift: rows of {values.shape[1:]} numeric and {cats.shape[1:]} categorical values; the "
                         f"profile has {len(names)} and {len(profile.categorical_names)}")
    tests = len(names) + len(profile.categorical_names)
    n_ref, n_new = profile.subjects, values.shape[0]
    features = numeric_drift(profile.numeric, values, names, thresholds, tests)
    for row, modality in zip(features, profile.numeric_modality, strict=True):
        row["modality"] = modality
    for j, name in enumerate(profile.categorical_names):
        x = cats[:, j]
        shares = [float(np.mean(x == v)) for v in profile.categorical_levels[j]] + [float(np.isnan(x).mean())]
        reference = np.asarray(profile.categorical_shares[j])
        value = psi(reference, np.asarray(shares), n_ref, n_new)
        bins = int(np.sum((reference > 0) | (np.asarray(shares) > 0)))
        p_value = min(1.0, psi_p_value(value, n_ref, n_new, bins) * tests)
        features.append({"feature": name, "modality": "lifestyle", "kind": "categorical", "psi": value,
                         "psi_p_value": p_value, "drifted": value >= thresholds.psi and p_value < thresholds.alpha,
                         "missing_rate": shares[-1],
                         "reference_missing_rate": profile.categorical_shares[j][-1],
                         "missingness_drifted": abs(shares[-1] - profile.categorical_shares[j][-1])
                         >= thresholds.missing_change})
    modalities = {}
    for m, ref_absent in profile.modality_absent.items():
        cols = [k for k, owner in enumerate(profile.numeric_modality) if owner == m]
        present = ~np.isnan(values[:, cols]).all(axis=1) if cols else np.zeros(n_new, bool)
        if m == "lifestyle" and profile.categorical_names:
            present |= ~np.isnan(cats).all(axis=1)
        absent = float(1 - present.mean())
        test = two_proportion_test(round(ref_absent * n_ref), n_ref, int((~present).sum()), n_new)
        modalities[m] = {"absent_share": absent, "reference_absent_share": ref_absent,
                         "change": absent - ref_absent, "p_value": test["p_value"],
                         "drifted": bool(abs(absent - ref_absent) >= thresholds.absent_change
                                         and test["p_value"] < thresholds.alpha)}
    out: dict[str, Any] = {
        "subjects": n_new, "reference_subjects": n_ref,
        "thresholds": dataclasses.asdict(thresholds), "features": features, "modalities": modalities,
        "drifted_features": [r["feature"] for r in features if r["drifted"]],
        "missingness_drifted_features": [r["feature"] for r in features if r["missingness_drifted"]],
        "drifted_modalities": [m for m, r in modalities.items() if r["drifted"]],
    }
    if predictions is not None and profile.predictions is not None:
        pred = numeric_drift(profile.predictions, np.asarray(predictions, float)[:, None], ("prediction",),
                             thresholds, 1)[0]
        out["predictions"] = pred
        out["prediction_drifted"] = pred["drifted"]
    return out
