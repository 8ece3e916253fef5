"""Small file-system primitives the SDK (the spool) and the collector (anchor
directory, credentials) share."""

from __future__ import annotations

import os
from typing import Union


def fsync_dir(path: Union[str, "os.PathLike[str]"]) -> None:
    """Make a directory's entries (a file created or renamed in it) survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
