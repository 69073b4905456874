"""The exception types the CLI turns into exit codes.

Every check of a config, a schema, a data file or a batch raises `InputError` with a
message that names what is wrong (field, column, row, expected shape). It subclasses
`ValueError` so library users can catch it the usual way; the CLI turns it into exit
code 2 with a one-line message on stderr.

A write that finds the disk (or quota) full raises `DiskFullError` naming the path being
written; the writer has left the previous complete state in place (every store writes to
a temporary file or directory and renames it). The CLI exits 74 (`EX_IOERR` of sysexits.h).
"""

from __future__ import annotations

import errno
import os

FULL = (errno.ENOSPC, errno.EDQUOT)


class InputError(ValueError):
    """Bad user input: the message names the field, column, row or shape at fault."""


class DiskFullError(OSError):
    """No space left (or quota exceeded) while writing `path`; the last complete state is kept."""

    def __init__(self, path: str | os.PathLike, cause: OSError) -> None:
        super().__init__(cause.errno, f"no space left on the device writing {path} ({cause.strerror or cause}); "
                                      "the last complete state is kept: free space and rerun", str(path))
        self.path = str(path)

    def __str__(self) -> str:
        return self.strerror or ""


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and not isinstance(error, DiskFullError) and error.errno in FULL
