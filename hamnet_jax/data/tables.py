"""Reading user files (CSV, Parquet, NPZ) into a pandas frame, long format.

NPZ files hold one 1-D array per column (`np.savez(path, **{column: values})`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from hamnet_jax.errors import InputError

READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(f"data file {path} does not exist")
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"data file {path}: unsupported extension {path.suffix!r}; use one of {sorted(READERS)}")
    try:
        if kind == "csv":
            return pd.read_csv(path, low_memory=False)
        if kind == "parquet":
            return pd.read_parquet(path)
        with np.load(path, allow_pickle=False) as npz:
            lengths = {k: npz[k].shape for k in npz.files}
            bad = [k for k, s in lengths.items() if len(s) != 1]
            if bad:
                raise InputError(f"data file {path}: NPZ array {bad[0]!r} has shape {lengths[bad[0]]}; "
                                 "expected one 1-D array per column")
            if len({s[0] for s in lengths.values()}) > 1:
                raise InputError(f"data file {path}: NPZ columns differ in length: {lengths}")
            return pd.DataFrame({k: npz[k] for k in npz.files})
    except InputError:
        raise
    except Exception as e:  # parser errors of pandas / pyarrow / numpy
        raise InputError(f"data file {path}: could not be read as {kind} ({type(e).__name__}: {e})") from None


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a frame in the format its extension names, atomically."""
    from hamnet_jax.io_atomic import write_atomic

    path = Path(path)
    kind = READERS.get(path.suffix.lower())
    if kind == "csv":
        write_atomic(path, lambda f: frame.to_csv(f, index=False))
    elif kind == "parquet":
        write_atomic(path, lambda f: frame.to_parquet(f, index=False), mode="wb")
    elif kind == "npz":
        # object columns (strings) become fixed-width unicode so they load without pickle
        cols = {c: frame[c].to_numpy().astype(str) if frame[c].dtype == object or frame[c].dtype.kind in "OSU"
                or str(frame[c].dtype).startswith("str") else frame[c].to_numpy() for c in frame.columns}
        write_atomic(path, lambda f: np.savez(f, **cols), mode="wb")
    else:
        raise InputError(f"output file {path}: unsupported extension {path.suffix!r}; use one of {sorted(READERS)}")
