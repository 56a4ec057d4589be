"""One rule for failures: the user's input, files or environment -> one clear line.

The library raises ``ValueError`` subclasses for bad input (``CheckpointError``,
``BadImageError``, ``AnnotationError``, config errors), ``OSError`` for files and
folders, and :class:`ExternalToolError` when a helper program (Java: METEOR, the
PTB tokenizer) fails or hangs. ``ptlib.cli.main`` prints these as one line,
``ptlib COMMAND: error: MESSAGE``, and exits with status 2; anything else is a
bug and keeps its traceback. ``--debug`` or ``PTLIB_DEBUG=1`` shows the
traceback of every error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


class ExternalToolError(RuntimeError):
    """A helper program (Java for METEOR or the PTB tokenizer) failed, hung or is missing."""


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ExternalToolError)
"""Exception types that mean "the input, a file or the environment is wrong"."""

_WORKER_HEADER = re.compile(r"^Caught (\w+) in DataLoader worker process \d+\.?$")
_QUALIFIED = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception)): (.*)$")


def debug_enabled() -> bool:
    """Whether ``PTLIB_DEBUG`` asks for full tracebacks (any value but "", "0", "false")."""
    return os.environ.get("PTLIB_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def worker_error_type(err: BaseException) -> str | None:
    """The original exception's class name when ``err`` was re-raised from a DataLoader worker."""
    first = str(err).strip().splitlines()[:1]
    match = _WORKER_HEADER.match(first[0].strip()) if first else None
    return match.group(1) if match else None


def worker_message(text: str) -> str:
    """The original message inside the text of an error re-raised from a DataLoader worker.

    torch re-raises a worker's exception as ``type(err)(text)`` where ``text`` is
    "Caught X in DataLoader worker process N. Original Traceback ... module.X: message";
    any other text is returned unchanged.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not _WORKER_HEADER.match(lines[0]):
        return text
    match = _QUALIFIED.match(lines[-1])
    return match.group(2) if match else lines[-1]


def one_line(err: BaseException) -> str:
    """The message of ``err`` as one line, for ``ptlib COMMAND: error: ...``.

    An error re-raised from a DataLoader worker carries the worker's traceback in
    its text; the original message (its last line) is kept. ``OSError`` gets its
    file name; ``KeyError``'s quotes are dropped.
    """
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    elif isinstance(err, OSError) and err.strerror and not str(err).startswith(("cannot", "no ")):
        names = [n for n in (err.filename, err.filename2) if n is not None]
        text = err.strerror + (": " + " -> ".join(str(n) for n in names) if names else "")
    else:
        text = str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if worker_error_type(err) is not None:
        return worker_message(text)
    return " ".join(lines)


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is the input's, a file's or the environment's fault (not a bug)."""
    if isinstance(err, USER_ERRORS):
        return True
    if isinstance(err, RuntimeError):  # a worker's error that torch could not rebuild
        name = worker_error_type(err)
        return name is not None and (
            name.endswith(("ValueError", "ImageError", "AnnotationError", "CheckpointError"))
            or name in ("FileNotFoundError", "PermissionError", "OSError", "ExternalToolError")
        )
    return False


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists() or parent.is_symlink():
            return parent
    return Path(".")


def check_output_dir(path: str | Path, what: str) -> Path:
    """Check that files can be written into folder ``path`` (created if missing).

    Args:
        path: The folder.
        what: How the user named it, e.g. ``"--out"``.

    Raises:
        ValueError: The path is a file, lies under a file, or is not writable.
    """
    path = Path(path)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        place = "is a file" if existing == path else f"lies under the file {existing}"
        raise ValueError(f"{what} {path}: {place}, not a folder; choose another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: cannot write into {existing} (permission denied); "
                         "choose a folder you can write to")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{what} {path}: cannot create the folder ({err.strerror or err})") from err
    return path


def check_output_file(path: str | Path, what: str) -> Path:
    """Check that file ``path`` can be (re)written, before any work starts.

    Its folder is not created here (a later write does that).

    Raises:
        ValueError: The path is a folder, its folder lies under a file, or the
            file or folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a folder; give a file name")
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise ValueError(f"{what} {path}: {existing} is a file, not a folder; choose another path")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{what} {path}: the file is not writable (permission denied)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: cannot write into {existing} (permission denied); "
                         "choose another path")
    return path
