"""Checkpoints: written atomically, loaded safely.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and dicts
(model, optimizer, scheduler and scaler state, RNG states, epoch/step, vocabulary,
config, ptlib version). It is saved to a temporary file in the same folder and
renamed over the target, so an interruption never leaves a half-written
checkpoint, and loaded with ``torch.load(..., weights_only=True)``, so a file that
carries pickled code is refused instead of executed.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

import ptlib
from ptlib.course import atomic_write

CHECKPOINT_FORMAT = 1
"""Bumped when the layout of the checkpoint dictionary changes."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or of the wrong kind."""


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Save ``state`` to ``path`` atomically (temporary file + fsync + rename).

    ``ptlib_version`` and ``format`` are added to the saved dictionary.

    Args:
        path: Target file, e.g. ``checkpoints/shapes_vit/last.pt``. Parent folders are created.
        state: Plain data only (tensors, numbers, strings, lists, tuples, dicts, None):
            anything else could not be loaded back with ``weights_only=True``.

    Returns:
        The path written.
    """
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "ptlib_version": ptlib.__version__, **state}
    atomic_write(path, lambda handle: torch.save(payload, handle))
    return path


def _unpickler_detail(err: Exception) -> str:
    """The informative line of torch's weights-only unpickler error."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "Unsupported global" in line:
            return line
    for index, line in enumerate(lines):
        if line.startswith("WeightsUnpickler error") and index + 1 < len(lines):
            return lines[index + 1]
    return lines[0] if lines else type(err).__name__


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint saved by :func:`save_checkpoint`, refusing pickled code.

    Args:
        path: The checkpoint file.
        map_location: Where to put the tensors (default CPU).

    Returns:
        The checkpoint dictionary.

    Raises:
        CheckpointError: If the file is missing or empty, is not a torch checkpoint,
            carries objects other than plain data (pickled classes or functions:
            ptlib never runs code from a checkpoint), or is not a ptlib checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (an interrupted copy?)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _unpickler_detail(err)
        if "Unsupported global" not in str(err):
            raise CheckpointError(
                f"checkpoint {path} cannot be read as a torch checkpoint (truncated or not a "
                f"checkpoint?): {detail}"
            ) from err
        raise CheckpointError(
            f"checkpoint {path} was refused: it carries pickled Python objects that are not "
            "plain tensors or containers, and ptlib loads checkpoints with weights_only=True so "
            f"that a file can never run code. Detail: {detail}"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(
            f"checkpoint {path} cannot be read as a torch checkpoint (truncated or not a "
            f"checkpoint?): {err}"
        ) from err
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(
            f"{path} is a torch file but not a ptlib checkpoint (no 'format' key); "
            "use ptlib.train.save_checkpoint to write one"
        )
    if state["format"] > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {state['format']}, newer than this ptlib "
            f"({ptlib.__version__}) understands ({CHECKPOINT_FORMAT}); upgrade ptlib"
        )
    return state
