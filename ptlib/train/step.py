"""One optimizer step's ingredients: the caption loss, mixed precision, the learning rate.

* :func:`caption_loss_sum`: next-token cross-entropy over non-padding positions.
* :func:`resolve_amp`, :func:`autocast`, :func:`make_scaler`: which autocast dtype
  a run uses and whether it needs a gradient scaler.
* :func:`warmup_cosine_scheduler`: linear warm-up, then cosine decay to a floor.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ptlib.tokens import PAD_ID

# ---------------------------------------------------------------------------
# The captioning loss
# ---------------------------------------------------------------------------


def caption_loss_sum(
    logits: torch.Tensor, targets: torch.Tensor, *, pad_id: int = PAD_ID, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of the next-token predictions, and how many tokens it covers.

    Teacher forcing: the decoder reads ``tokens[:, :-1]`` and is scored on
    ``tokens[:, 1:]``; padding positions are ignored. The engine divides the sum by
    the number of tokens in the whole (global) batch, so that single-process and
    distributed runs with the same global batch take the same steps.

    Args:
        logits: ``(B, T, V)`` scores for positions ``1..T`` of the caption.
        targets: ``(B, T)`` token ids, ``pad_id`` where there is no token.
        pad_id: The padding id.
        label_smoothing: Cross-entropy label smoothing in [0, 1).

    Returns:
        ``(loss_sum, n_tokens)``: a scalar tensor and an int.
    """
    if logits.shape[:2] != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} disagree on (B, T)"
        )
    loss_sum = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        targets.reshape(-1),
        ignore_index=pad_id,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    return loss_sum, int((targets != pad_id).sum())


# ---------------------------------------------------------------------------
# Mixed precision
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Learning-rate schedule
# ---------------------------------------------------------------------------


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """The multiplier of the base learning rate at optimizer step ``step``.

    Rises linearly from ``1 / warmup_steps`` to 1 over ``warmup_steps`` steps, then
    follows a half cosine from 1 down to ``min_ratio`` at ``total_steps``.

    Args:
        step: Optimizer steps taken so far (0-based).
        total_steps: Steps of the whole run.
        warmup_steps: Steps of linear warm-up (0 for none).
        min_ratio: The final multiplier, in [0, 1].
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_ratio}")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`warmup_cosine_factor` (call ``step()`` per optimizer step)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, total_steps, warmup_steps, min_ratio)
    )
