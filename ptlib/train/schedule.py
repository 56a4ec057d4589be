"""Learning-rate schedule: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math

import torch


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
