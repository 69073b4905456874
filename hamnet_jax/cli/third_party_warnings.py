"""A quiet terminal: Python warnings raised by other libraries are logged at DEBUG.

A `hamnet` command prints its own lines; nevergrad's `InefficientSettingsWarning` for a
small study or a deprecation deep inside a dependency says nothing the user can act on, so
it goes to the `hamnet_jax.third_party` logger at DEBUG (`HAMNET_LOG_LEVEL=debug` or
`general.log_level: debug` shows it). Warnings raised by hamnet_jax itself, and every
warning when the user asked for them (`python -W ...` or `PYTHONWARNINGS`), print as usual.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import TextIO

PACKAGE = Path(__file__).resolve().parents[1]
log = logging.getLogger("hamnet_jax.third_party")


def _ours(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(PACKAGE)
    except (OSError, ValueError):
        return False


def log_third_party_warnings() -> None:
    """Route warnings attributed to files outside hamnet_jax to the log at DEBUG."""
    if sys.warnoptions:  # the user asked for warnings: they get Python's own handling
        return
    show = warnings.showwarning
    if getattr(show, "hamnet_routes_third_party", False):
        return

    def showwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    file: TextIO | None = None, line: str | None = None) -> None:
        if _ours(filename):
            show(message, category, filename, lineno, file, line)
        else:
            log.debug("%s:%d: %s: %s", filename, lineno, category.__name__, message)

    showwarning.hamnet_routes_third_party = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning

