"""Writing files so that a reader never sees half of one: atomic writes.

Results, checkpoints, histories and vocabularies are all written through
:func:`atomic_write`: a temporary file beside the target, fsync, and a rename.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def _umask_mode(base: int = 0o666) -> int:
    """``base`` with the process umask applied (what ``open()`` would give a new file)."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def atomic_temp_file(path: Path) -> tuple[int, str]:
    """Open a temporary file beside ``path`` with ordinary permissions.

    ``tempfile.mkstemp`` creates files readable by the owner only (0600); a result
    or checkpoint should get the mode a plain ``open()`` would give it.

    Returns:
        ``(file descriptor, temporary path)``; rename it over ``path`` when written.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _umask_mode())
    return fd, tmp_name


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Write a file through a temporary file beside it, fsync and a rename.

    A reader never sees a half-written file; an interrupted write (an exception,
    Ctrl-C) leaves the old file (or none) in place and no temporary file behind.

    Args:
        path: The file to (re)write; parent folders are created.
        write: Writes the content to the binary handle it is given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = atomic_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
