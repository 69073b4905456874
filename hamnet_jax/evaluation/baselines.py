"""Tabular baselines on the flattened features, fitted per task head the model has:
Ridge and HistGradientBoostingRegressor for the regression target, L2 logistic regression
and HistGradientBoostingClassifier for the binary outcome.

Flattening puts the most recent visit first (slot 0 = the visit the prediction is for),
then earlier visits, each slot holding every feature (NaN where missing) and its visit
time, so trees can split on "latest value" directly. `features="last-visit"` keeps slot 0
only: V times fewer columns, much faster to fit on wide data. Needs scikit-learn
(`pip install 'hamnet-jax[baselines]'`).

At cohort scale the flattened training split does not fit in memory (350,000 subjects x
6,620 columns is 9 GB of float32, twice that with the linear model's missing-value
indicators), so the baselines fit on a seeded sample of at most `BASELINE_MAX_SUBJECTS`
training subjects (`baseline_training_subjects`; the evaluation table says so) and
predict a chunk of subjects at a time.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from hamnet_jax.data.arrays import CohortArrays
from hamnet_jax.data.cohort_cache import CachedCohort
from hamnet_jax.data.split import seeded_sample
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import MODALITIES


BASELINE_FEATURES: tuple[str, ...] = ("all-visits", "last-visit")
BASELINE_MAX_SUBJECTS = 20_000


def baseline_training_subjects(train: CohortArrays | CachedCohort, max_subjects: int = BASELINE_MAX_SUBJECTS,
                               seed: int = 0) -> CohortArrays:
    """The training subjects the baselines fit on, in memory: all of them when there are at
    most `max_subjects`, else a sample of that many drawn with `seed` (in cohort order)."""
    if max_subjects < 1:
        raise InputError(f"baseline subjects: expected at least 1, got {max_subjects}")
    if train.num_subjects <= max_subjects:
        return train.in_memory()
    return train.rows(seeded_sample(train.num_subjects, max_subjects, seed))


def flatten_features(data: CohortArrays, features: str = "all-visits") -> np.ndarray:
    """[N, V * (D + K + 1)] features, most recent visit first, NaN for missing; with
    `features="last-visit"` [N, D + K + 1], the most recent visit only."""
    if features not in BASELINE_FEATURES:
        raise InputError(f"baseline features {features!r}: expected one of {list(BASELINE_FEATURES)}")
    x = np.concatenate([data.values[m] for m in MODALITIES] + [data.categorical.astype(np.float32)], axis=-1)
    x = np.concatenate([x, data.visit_times[..., None]], axis=-1)
    n_visits = data.visit_mask.sum(1).astype(int)
    slot = n_visits[:, None] - 1 - np.arange(x.shape[1])[None, :]
    real = slot >= 0
    x = np.take_along_axis(x, np.maximum(slot, 0)[..., None], axis=1)
    x[~real] = np.nan
    return (x[:, 0] if features == "last-visit" else x).reshape(len(x), -1)


def _sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise InputError("baselines need scikit-learn: pip install 'hamnet-jax[baselines]'") from None


BASELINE_TASKS: tuple[str, ...] = ("regression", "classification")
CLASSIFIER_NAMES = ("logistic_regression", "hist_gradient_boosting_classifier")


def _models(task: str, seed: int) -> tuple[tuple[str, Any], ...]:
    """(name, unfitted model) of one task: a linear model with its penalty chosen by
    internal cross-validation, and gradient boosting (scikit-learn defaults, learning rate
    0.1, early stopping on a held-out 15%). Missing values: mean-imputed with indicators
    for the linear model, native for the trees."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    boosting = dict(max_iter=400, learning_rate=0.1, early_stopping=True, validation_fraction=0.15,
                    n_iter_no_change=20, random_state=seed)
    linear = lambda model: make_pipeline(SimpleImputer(strategy="mean", add_indicator=True, keep_empty_features=True),
                                         StandardScaler(), model)
    if task == "regression":
        return (("ridge", linear(RidgeCV(alphas=np.logspace(0, 5, 11)))),
                ("hist_gradient_boosting", HistGradientBoostingRegressor(**boosting)))
    return ((CLASSIFIER_NAMES[0], linear(LogisticRegressionCV(Cs=np.logspace(-3, 2, 11), cv=5, scoring="neg_log_loss",
                                                              max_iter=2000))),
            (CLASSIFIER_NAMES[1], HistGradientBoostingClassifier(**boosting)))


def fit_baselines(train: CohortArrays, seed: int = 0, features: str = "all-visits",
                  progress: Callable[[str], None] | None = None,
                  tasks: tuple[str, ...] = ("regression",)) -> dict[str, Any]:
    """Fitted baselines of each of `tasks` ({'ridge', 'hist_gradient_boosting'} on the
    targets, {'logistic_regression', 'hist_gradient_boosting_classifier'} on the outcome)
    on the training subjects; `progress` hears what is being fitted, and how long it took."""
    _sklearn()
    unknown = sorted(set(tasks) - set(BASELINE_TASKS))
    if unknown:
        raise InputError(f"baseline task {unknown[0]!r}: expected one of {list(BASELINE_TASKS)}")
    x = flatten_features(train, features)
    keep = ~np.all(np.isnan(x), axis=0)  # columns never observed in training carry nothing
    say = progress or (lambda _: None)
    fitted = {}
    for task in tasks:
        y = train.targets if task == "regression" else train.labels
        known = np.isfinite(y)
        for name, model in _models(task, seed):
            say(f"fitting {name} on {int(known.sum()):,} subjects x {int(keep.sum()):,} columns ({features})")
            start = time.perf_counter()
            with warnings.catch_warnings():  # LogisticRegressionCV's notices of future defaults (l2 stays l2)
                warnings.simplefilter("ignore", FutureWarning)
                fitted[name] = (model.fit(x[known][:, keep], y[known]), keep, features)
            say(f"fitted {name} in {time.perf_counter() - start:.1f} s")
    return fitted


def predict_baseline(fitted: tuple[Any, np.ndarray, str], data: CohortArrays | CachedCohort) -> dict[str, np.ndarray]:
    """{'prediction': ...} of a regressor, {'outcome_probability': ...} of a classifier,
    a chunk of subjects at a time."""
    model, keep, features = fitted
    parts = []
    for chunk in data.chunks():
        x = flatten_features(chunk, features)[:, keep]
        parts.append(model.predict_proba(x)[:, 1] if hasattr(model, "predict_proba") else model.predict(x))
    name = "outcome_probability" if hasattr(model, "predict_proba") else "prediction"
    return {name: np.concatenate(parts)}
