"""Fitted baselines kept in the shared cache (`baselines/` under the cache root:
cache_root.py), so a second `hamnet evaluate` does not refit, nor does an evaluation of
another run on the same training split.

The key is a SHA-256 of what the fit depends on: the training split's flattened features,
targets and outcomes, the tasks (so a changed data file, split or schema invalidates it, whatever the file's
name or format), the seed, the feature mode, and the scikit-learn version (fitted models do
not cross versions). The file is named by the key, `<key>.skops`, written atomically; its
modification time marks its last use (`hamnet cache prune --older-than`).

No pickle: a run directory may be shared or downloaded, and loading a pickle runs whatever
code it names. skops (https://skops.readthedocs.io) stores scikit-learn models as a
schema of plain values and loads only the types it is told to trust: here scikit-learn's
own and the two it asks about for these models (`TRUSTED`). A file naming any other type
is not loaded; the baselines are refitted.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hamnet_jax.cache_root import cache_dir
from hamnet_jax.data.arrays import CohortArrays
from hamnet_jax.evaluation.baselines import fit_baselines, flatten_features
from hamnet_jax.errors import InputError
from hamnet_jax.io_atomic import write_atomic

CACHE_FORMAT = 3  # bump when the baselines' models or settings change
# the types these baselines hold that skops does not trust by default (its `get_untrusted_types`)
TRUSTED = ["numpy.dtype", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def baseline_key(train: CohortArrays, seed: int, features: str, tasks: tuple[str, ...] = ("regression",)) -> str:
    import sklearn

    digest = hashlib.sha256(f"{CACHE_FORMAT}|{sklearn.__version__}|{seed}|{features}|{','.join(tasks)}|".encode())
    x = np.ascontiguousarray(flatten_features(train, features))
    digest.update(str(x.shape).encode())
    digest.update(x.tobytes())
    digest.update(np.ascontiguousarray(train.targets, np.float32).tobytes())
    digest.update(np.ascontiguousarray(train.labels, np.float32).tobytes())
    return digest.hexdigest()


def cached_baselines(directory: str | Path | None, train: CohortArrays, seed: int, features: str = "all-visits",
                     progress: Callable[[str], None] | None = None,
                     tasks: tuple[str, ...] = ("regression",)) -> tuple[dict[str, Any], bool]:
    """(fitted baselines of `tasks`, whether they came from the cache in `directory`,
    default the shared `baselines/`)."""
    say = progress or (lambda _: None)
    key = baseline_key(train, seed, features, tasks)
    path = Path(directory if directory is not None else cache_dir("baselines")) / f"{key[:32]}.skops"
    if path.exists():
        stored, why = _load(path)
        if stored is not None and stored.get("key") == key:
            say(f"baselines: reusing {path.name} (fitted on this training split)")
            os.utime(path)  # last used
            return stored["models"], True
        say(f"baselines: {path.name} {why or 'holds another fit'}; refitting")
    models = fit_baselines(train, seed, features, progress, tasks)
    blob = _skops().dumps({"key": key, "models": models})
    try:
        write_atomic(path, lambda f: f.write(blob), mode="wb")
    except OSError as e:  # a read-only cache: the evaluation stands, only the reuse is lost
        say(f"baselines: not cached ({path}: {e.strerror or e})")
    return models, False


def _skops() -> Any:
    try:
        import skops.io as sio
    except ImportError:
        raise InputError("baselines need skops to store fitted models: pip install 'hamnet-jax[baselines]'") from None
    return sio


def _load(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(the stored {'key', 'models'}, "") or (None, why it was not loaded)."""
    sio = _skops()
    try:
        blob = path.read_bytes()
        untrusted = sorted(set(sio.get_untrusted_types(data=blob)) - set(TRUSTED))
        if untrusted:
            return None, f"names types this cache never holds ({', '.join(untrusted)})"
        return sio.loads(blob, trusted=TRUSTED), ""
    except Exception as e:  # a torn, foreign or older-version file is refitted, whatever skops raises
        return None, f"is unreadable ({type(e).__name__})"
