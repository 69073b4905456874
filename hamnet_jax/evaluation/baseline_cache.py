"""Fitted baselines kept in the run directory, so a second `hamnet evaluate` does not refit.

The key is a SHA-256 of what the fit depends on: the training split's flattened features,
targets and outcomes, the tasks (so a changed data file, split or schema invalidates it, whatever the file's
name or format), the seed, the feature mode, and the scikit-learn version (pickles do not
cross versions). One file per feature mode, `baselines-<features>.pkl`, replaced
atomically when its key changes. The run directory is the user's own: the pickle is as
trusted as its checkpoints.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hamnet_jax.data.arrays import CohortArrays
from hamnet_jax.evaluation.baselines import fit_baselines, flatten_features
from hamnet_jax.io_atomic import write_atomic

CACHE_FORMAT = 2  # bump when the baselines' models or settings change


def baseline_key(train: CohortArrays, seed: int, features: str, tasks: tuple[str, ...] = ("regression",)) -> str:
    import sklearn

    digest = hashlib.sha256(f"{CACHE_FORMAT}|{sklearn.__version__}|{seed}|{features}|{','.join(tasks)}|".encode())
    x = np.ascontiguousarray(flatten_features(train, features))
    digest.update(str(x.shape).encode())
    digest.update(x.tobytes())
    digest.update(np.ascontiguousarray(train.targets, np.float32).tobytes())
    digest.update(np.ascontiguousarray(train.labels, np.float32).tobytes())
    return digest.hexdigest()


def cached_baselines(run_dir: str | Path, train: CohortArrays, seed: int, features: str = "all-visits",
                     progress: Callable[[str], None] | None = None,
                     tasks: tuple[str, ...] = ("regression",)) -> tuple[dict[str, Any], bool]:
    """(fitted baselines of `tasks`, whether they came from the cache)."""
    say = progress or (lambda _: None)
    path = Path(run_dir) / f"baselines-{features}.pkl"
    key = baseline_key(train, seed, features, tasks)
    if path.exists():
        try:
            with path.open("rb") as f:
                stored = pickle.load(f)
            if stored.get("key") == key:
                say(f"baselines: reusing {path.name} (fitted on this training split)")
                return stored["models"], True
            say(f"baselines: {path.name} was fitted on other data; refitting")
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as e:
            say(f"baselines: {path.name} is unreadable ({type(e).__name__}); refitting")
    models = fit_baselines(train, seed, features, progress, tasks)
    try:
        write_atomic(path, lambda f: pickle.dump({"key": key, "models": models}, f,
                                                 protocol=pickle.HIGHEST_PROTOCOL), mode="wb")
    except OSError as e:  # a read-only run directory: the evaluation stands, only the reuse is lost
        say(f"baselines: not cached ({path}: {e.strerror or e})")
    return models, False
