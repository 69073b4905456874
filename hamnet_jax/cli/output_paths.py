"""No output over an input: a command's `--out` naming one of its inputs (the same path, a
hard link, or a symlink to it) is refused before anything is read or written, because the
temp + rename that makes the output atomic would replace the input (a run directory
passed back as a compressed run's `--out` is the same case).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hamnet_jax.errors import InputError

INPUT_FLAGS = ("data", "schema", "config", "run", "pruned", "distilled", "repository")
OUTPUT_FLAGS = ("out",)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file or directory (through links, hard or symbolic)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they resolve
        return Path(a).resolve() == Path(b).resolve()


def refuse_output_over_input(args: argparse.Namespace) -> None:
    """An InputError (exit 2) naming both flags when an output would replace an input."""
    inputs = {f: getattr(args, f) for f in INPUT_FLAGS if isinstance(getattr(args, f, None), (str, os.PathLike))}
    for out_flag in OUTPUT_FLAGS:
        out = getattr(args, out_flag, None)
        if not isinstance(out, (str, os.PathLike)):
            continue
        for in_flag, source in inputs.items():
            if same_file(out, source):
                raise InputError(f"--{out_flag} {out} is the same file as --{in_flag} {source}: writing it would "
                                 "replace the input; choose another output path")
