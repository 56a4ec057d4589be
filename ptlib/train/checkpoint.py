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
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

import ptlib
from ptlib.files import atomic_write

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

    Raises:
        CheckpointError: The file cannot be written (full disk, no permission, a file
            where a folder should be); the previous checkpoint, if any, is intact.
    """
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "ptlib_version": ptlib.__version__, **state}
    if path.parent.is_dir():  # left by a save that was killed mid-write (SIGKILL)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
    try:
        atomic_write(path, lambda handle: torch.save(payload, handle))
    except OSError as err:
        kept = "the previous file is intact" if path.is_file() else "nothing was written"
        reason = err.strerror or str(err) or type(err).__name__
        raise CheckpointError(
            f"cannot save checkpoint {path}: {reason} ({kept}); free space or fix the "
            "folder's permissions, then resume"
        ) from err
    return path


_BLOCKED_GLOBAL = re.compile(r"\bGLOBAL\b", re.IGNORECASE)
"""torch's weights-only unpickler names a refused class or function as ``GLOBAL module.name``
(torch <= 2.5: "Unsupported global: GLOBAL x.y was not an allowed global"; torch 2.14:
"Trying to load unsupported GLOBAL posix.system whose module posix is blocked")."""

_TORCH_ADVICE = ("weights_only", "Weights only load failed", "Check the documentation",
                 "In PyTorch 2.6", "Re-running `torch.load`")


def _unpickler_detail(err: BaseException) -> str:
    """The informative line of torch's weights-only unpickler error (never its advice)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if _BLOCKED_GLOBAL.search(line):
            return line
    for index, line in enumerate(lines):
        if line.startswith("WeightsUnpickler error") and index + 1 < len(lines):
            return lines[index + 1]
        if line.startswith("WeightsUnpickler error:"):
            return line
    useful = [line for line in lines if not any(a in line for a in _TORCH_ADVICE)]
    text = useful[0] if useful else (type(err).__name__ if not lines else "")
    return text[:200] if text else type(err).__name__


def is_blocked_global(err: BaseException) -> bool:
    """Whether ``err`` is torch refusing a pickled class or function (weights_only=True)."""
    if not isinstance(err, pickle.UnpicklingError):
        return False
    return any(_BLOCKED_GLOBAL.search(line) for line in str(err).splitlines()
               if not any(a in line for a in _TORCH_ADVICE[2:]))


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete temporary files left by saves that were killed mid-write (``.NAME.*.tmp``).

    :func:`ptlib.files.atomic_write` removes its temporary file on any exception,
    but SIGKILL or a power cut leaves it behind. Call this before saving into or
    resuming from ``folder`` (one run writes a folder at a time).

    Returns:
        The files removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for stale in folder.glob(".*.pt.*.tmp"):
        try:
            stale.unlink()
            removed.append(stale)
        except OSError:  # pragma: no cover - someone else's file: leave it
            pass
    return removed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint saved by :func:`save_checkpoint`, refusing pickled code.

    Args:
        path: The checkpoint file.
        map_location: Where to put the tensors (default CPU).

    Returns:
        The checkpoint dictionary.

    Raises:
        CheckpointError: If the file is missing or empty, cannot be read for any reason
            (truncated, garbage, not a torch file), carries objects other than plain data
            (pickled classes or functions: ptlib never runs code from a checkpoint), or
            is not a ptlib checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (an interrupted copy?)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except KeyboardInterrupt:
        raise
    except MemoryError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read: out of memory ({err})") from err
    except Exception as err:  # noqa: BLE001 - every read failure is the file's fault
        if is_blocked_global(err):
            raise CheckpointError(
                f"checkpoint {path} refused for safety: it carries a pickled Python object "
                f"({_unpickler_detail(err)}); ptlib loads plain tensors and containers only "
                "(weights_only=True), so a file can never run code. Use a checkpoint written by "
                "ptlib train"
            ) from err
        if isinstance(err, PermissionError):
            raise CheckpointError(f"checkpoint {path} cannot be read: permission denied") from err
        detail = _unpickler_detail(err) if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be read as a torch checkpoint (truncated, corrupt or "
            f"not a checkpoint: {type(err).__name__}: {detail})"
        ) from err
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(
            f"{path} is a torch file but not a ptlib checkpoint (no 'format' key); "
            "use ptlib.train.save_checkpoint to write one"
        )
    if not isinstance(state["format"], int) or state["format"] > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {state['format']}, newer than this ptlib "
            f"({ptlib.__version__}) understands ({CHECKPOINT_FORMAT}); upgrade ptlib"
        )
    return state


def config_differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], section: str,
    ignore: tuple[str, ...] = (),
) -> list[str]:
    """``"section.key: saved -> current"`` for every key whose value differs."""
    keys = sorted((set(saved) | set(current)) - set(ignore), key=str)
    missing = object()
    out = []
    for key in keys:
        old, new = saved.get(key, missing), current.get(key, missing)
        if isinstance(old, tuple):
            old = list(old)
        if isinstance(new, tuple):
            new = list(new)
        if old != new:
            shown = ["(unset)" if v is missing else repr(v) for v in (old, new)]
            out.append(f"{section}.{key}: {shown[0]} -> {shown[1]}")
    return out


def check_weights_match(
    module: torch.nn.Module, weights: Mapping[str, Any], path: str | Path
) -> None:
    """Refuse ``weights`` (a saved state dict) unless every key and shape fits ``module``.

    Called before ``load_state_dict``, so a mismatch never half-loads a model and
    the error names the parameters instead of torch's many-line ``RuntimeError``.

    Raises:
        CheckpointError: Naming up to four differing parameters.
    """
    if not isinstance(weights, Mapping):
        raise CheckpointError(f"checkpoint {path}: its 'model' entry is not a state dict")
    expected = module.state_dict()
    problems = []
    for key, value in expected.items():
        if key not in weights:
            problems.append(f"{key} missing")
        elif not isinstance(weights[key], torch.Tensor):
            problems.append(f"{key} is not a tensor")
        elif tuple(weights[key].shape) != tuple(value.shape):
            problems.append(f"{key} {tuple(weights[key].shape)} in the file, "
                            f"{tuple(value.shape)} in the model")
    problems += [f"{key} unexpected" for key in weights if key not in expected]
    if problems:
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        raise CheckpointError(
            f"checkpoint {path} does not fit the model its config describes: "
            f"{'; '.join(problems[:4])}{more}; it was written by another model or edited"
        )
