"""Drift of the requests a service answers, against the training data's profile.

    live = LiveDrift(profile, raw.spec.widths, window=2000)
    live.observe(checked_request, predictions)     # after each answered request
    live.report()                                  # drift_of_rows over the window (cached)

A ring buffer keeps each of the last `window` subjects' last attended visit (the slot of
their most recent visit with anything observed: raw requests are left-aligned, padding
is all-NaN) and their predictions; `report()` runs the same tests as `hamnet drift` on it,
at most every `max_age_s` seconds (a scrape should not recompute 1,600 KS tests each time).
Recording costs a few array copies per request; the tests run on the scraper's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from hamnet_jax.data.profile import DataProfile
from hamnet_jax.errors import InputError
from hamnet_jax.monitoring.drift import DriftThresholds, drift_of_rows

CATEGORIES = "lifestyle_categories"


class LiveDrift:
    def __init__(self, profile: DataProfile, modalities: tuple[tuple[str, int], ...], window: int = 2000,
                 min_subjects: int = 100, max_age_s: float = 10.0,
                 thresholds: DriftThresholds | None = None) -> None:
        """`modalities`: the (name, width) of each raw numeric input, in request order."""
        widths = {m: sum(1 for owner in profile.numeric_modality if owner == m) for m in dict(modalities)}
        if widths != dict(modalities) or sum(widths.values()) != len(profile.numeric_names):
            raise InputError(f"live drift: the model's inputs {dict(modalities)} do not match the run's data profile "
                             f"({len(profile.numeric_names)} numeric features)")
        if window < min_subjects or min_subjects < 1:
            raise InputError(f"live drift: window {window} must hold at least min_subjects {min_subjects} >= 1")
        self.profile, self.modalities = profile, tuple(m for m, _ in modalities)
        self.thresholds = thresholds or DriftThresholds()
        self.window, self.min_subjects, self.max_age_s = int(window), int(min_subjects), float(max_age_s)
        self.values = np.full((self.window, len(profile.numeric_names)), np.nan, np.float32)
        self.cats = np.full((self.window, len(profile.categorical_names)), np.nan, np.float32)
        self.predictions = np.full(self.window, np.nan, np.float32)
        self.seen = 0  # subjects observed since the start
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any] | None] = (-np.inf, None)  # (when, report)

    def observe(self, arrays: Mapping[str, np.ndarray], predictions: np.ndarray | None = None) -> None:
        """Record one checked request (`Predictor.validate`'s arrays) and its predictions;
        of a request larger than the window, its last `window` subjects (the rest would be
        overwritten at once)."""
        skip = max(len(np.asarray(arrays[self.modalities[0]])) - self.window, 0)
        if skip:
            arrays = {k: np.asarray(a)[skip:] for k, a in arrays.items()}
            predictions = None if predictions is None else np.asarray(predictions).reshape(-1)[skip:]
        numeric = [np.asarray(arrays[m]) for m in self.modalities]
        b, v = numeric[0].shape[:2]
        observed = np.zeros((b, v), bool)
        for a in numeric + ([np.asarray(arrays[CATEGORIES])] if CATEGORIES in arrays else []):
            observed |= np.isfinite(a).any(axis=2)
        last = v - 1 - np.argmax(observed[:, ::-1], axis=1)
        rows = np.arange(b)
        values = np.concatenate([a[rows, last] for a in numeric], axis=1)
        cats = np.asarray(arrays[CATEGORIES])[rows, last] if CATEGORIES in arrays else np.zeros((b, 0), np.float32)
        with self._lock:
            slots = (self.seen + skip + np.arange(b)) % self.window
            self.values[slots] = values
            self.cats[slots] = cats
            self.predictions[slots] = np.nan if predictions is None else np.asarray(predictions).reshape(-1)
            self.seen += skip + b

    def report(self) -> dict[str, Any] | None:
        """The window's drift report, or None while it holds fewer than `min_subjects`."""
        now = time.monotonic()
        with self._lock:
            at, cached = self._cached
            if cached is not None and now - at < self.max_age_s:
                return cached
            n = min(self.seen, self.window)
            if n < self.min_subjects:
                return None
            values, cats, preds = self.values[:n].copy(), self.cats[:n].copy(), self.predictions[:n].copy()
            seen = self.seen
        finite = preds[np.isfinite(preds)]
        report = drift_of_rows(self.profile, values.astype(np.float64), cats.astype(np.float64),
                               finite if finite.size >= self.min_subjects else None, self.thresholds)
        report["window_subjects"], report["observed_subjects"] = n, seen
        with self._lock:
            self._cached = (now, report)
        return report
