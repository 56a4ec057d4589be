"""The captioning loss: next-token cross-entropy over non-padding positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ptlib.tokens import PAD_ID


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
