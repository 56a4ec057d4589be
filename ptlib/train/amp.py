"""Mixed precision: which autocast dtype and whether a gradient scaler is needed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` on ``device``, or ``None`` for full precision.

    ``"auto"`` uses bfloat16 on CUDA devices that support it, float16 on older CUDA
    devices, and full precision elsewhere (CPU autocast is slower than fp32 for
    these small models). ``"bf16"`` and ``"fp16"`` are honoured on the CPU too, so
    the GPU profile's mixed-precision code paths (autocast, the fp16 gradient
    scaler) can be tested without a GPU.

    Raises:
        ValueError: If a half-precision mode is asked for on a device other than
            CUDA or the CPU (e.g. MPS).
    """
    if mode == "off":
        return None
    if device.type == "cpu" and mode in ("bf16", "fp16"):
        return torch.bfloat16 if mode == "bf16" else torch.float16
    if device.type != "cuda":
        if mode == "auto":
            return None
        raise ValueError(f"train.amp={mode!r} needs a CUDA device (or the CPU); this run is "
                         f"on {device}")
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` when ``dtype`` is set, otherwise nothing."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def make_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for float16 (bfloat16 needs none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
