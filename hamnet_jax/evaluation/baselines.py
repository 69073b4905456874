"""Tabular baselines on the flattened features: Ridge and HistGradientBoostingRegressor.

Flattening puts the most recent visit first (slot 0 = the visit the prediction is for),
then earlier visits, each slot holding every feature (NaN where missing) and its visit
time, so trees can split on "latest value" directly. `features="last-visit"` keeps slot 0
only: V times fewer columns, much faster to fit on wide data. Needs scikit-learn
(`pip install 'hamnet-jax[baselines]'`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hamnet_jax.data.arrays import CohortArrays
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import MODALITIES


BASELINE_FEATURES: tuple[str, ...] = ("all-visits", "last-visit")


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


def fit_baselines(train: CohortArrays, seed: int = 0, features: str = "all-visits",
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fitted {'ridge': ..., 'hist_gradient_boosting': ...} on the training subjects;
    `progress` hears what is being fitted, and how long it took."""
    _sklearn()
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = flatten_features(train, features), train.targets
    keep = ~np.all(np.isnan(x), axis=0)  # columns never observed in training carry nothing
    say = progress or (lambda _: None)
    ridge = make_pipeline(SimpleImputer(strategy="mean", add_indicator=True, keep_empty_features=True),
                          StandardScaler(), RidgeCV(alphas=np.logspace(0, 5, 11)))
    # scikit-learn defaults (learning rate 0.1) with early stopping on a held-out 15%
    hgb = HistGradientBoostingRegressor(max_iter=400, learning_rate=0.1, early_stopping=True,
                                        validation_fraction=0.15, n_iter_no_change=20, random_state=seed)
    fitted = {}
    for name, model in (("ridge", ridge), ("hist_gradient_boosting", hgb)):
        say(f"fitting {name} on {len(y):,} subjects x {int(keep.sum()):,} columns ({features})")
        start = time.perf_counter()
        fitted[name] = (model.fit(x[:, keep], y), keep, features)
        say(f"fitted {name} in {time.perf_counter() - start:.1f} s")
    return fitted


def predict_baseline(fitted: tuple[Any, np.ndarray, str], data: CohortArrays) -> np.ndarray:
    model, keep, features = fitted
    return model.predict(flatten_features(data, features)[:, keep])
