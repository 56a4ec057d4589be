"""Batch capacity without a GPU: training bytes per image, the static state, the largest batch.

The bytes a training step holds at batch ``B`` are, to first order::

    static (parameters + gradients + optimizer state)
    + fixed (batch-independent saved tensors, e.g. half-precision weight
      copies under AMP)
    + B * per_image (tensors autograd saves for backward)

:func:`training_bytes` measures ``per_image`` and ``fixed`` with
:func:`ptlib.bench.saved_tensors.saved_tensor_bytes` (saved-tensor hooks, each storage counted
once, the parameters' own storages left out) at two batch sizes: the
difference divided by the batch difference is the per-image slope, what is left
is the fixed part. This counts real tensors on the CPU, so it needs no GPU, and
it is the same on any device for the same dtypes. It is a lower bound of the
peak: backward also holds gradients of activations for a while, and the
allocator rounds and fragments.

:func:`implied_max_batch` turns it into the largest batch a card of a given size
could hold, after a fixed workspace (CUDA context, cuBLAS/cuDNN workspaces,
allocator slack) that you state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ptlib.bench.saved_tensors import saved_tensor_bytes
from ptlib.tokens import SPECIAL_TOKENS
from ptlib.train.step import caption_loss_sum

GIB: int = 2**30
"""Bytes in a GiB."""

FP32_BYTES: int = 4
"""Bytes of one fp32 number (parameters, gradients and each AdamW moment are fp32)."""

ADAMW_STATES: int = 2
"""AdamW keeps two fp32 moments (``exp_avg``, ``exp_avg_sq``) per trainable parameter."""


def static_training_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of parameters, gradients and AdamW state (all fp32, also under AMP).

    Args:
        model: Any module; parameters with ``requires_grad=False`` get no
            gradient and no optimizer state.

    Returns:
        ``{"params", "trainable_params", "param_bytes", "grad_bytes",
        "optimizer_bytes", "static_bytes"}``.
    """
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    grad_bytes = trainable * FP32_BYTES
    optimizer_bytes = trainable * FP32_BYTES * ADAMW_STATES
    return {
        "params": params,
        "trainable_params": trainable,
        "param_bytes": param_bytes,
        "grad_bytes": grad_bytes,
        "optimizer_bytes": optimizer_bytes,
        "static_bytes": param_bytes + grad_bytes + optimizer_bytes,
    }


def _saved_activation_bytes(
    model: nn.Module,
    batch_size: int,
    img_size: int,
    caption_len: int,
    amp_dtype: torch.dtype | None,
) -> int:
    """Saved bytes of one training forward (+ loss) at ``batch_size``, parameters left out."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(batch_size)
    images = torch.randn(batch_size, 3, img_size, img_size, generator=generator).to(device)
    vocab_size = model.decoder.vocab_size
    first_word = len(SPECIAL_TOKENS)  # ids below are <pad>, <bos>, <eos>, <unk>
    tokens = torch.randint(
        first_word, vocab_size, (batch_size, caption_len), generator=generator
    ).to(device)
    tokens[:, 0] = model.bos_id

    def training_forward() -> torch.Tensor:
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            out = model(images, tokens[:, :-1])
        loss_sum, _ = caption_loss_sum(out.logits, tokens[:, 1:])
        return loss_sum + out.aux_loss.float()

    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = saved_tensor_bytes(training_forward)
    activation_bytes = sum(
        size for key, size in saved.storages.items() if key not in parameter_storages
    )
    del saved
    return activation_bytes


def training_bytes(
    model: nn.Module,
    img_size: int,
    caption_len: int,
    *,
    batch_sizes: Sequence[int] = (1, 2),
    amp_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Measure saved-activation bytes per image and the static training state of a captioner.

    The model runs in training mode (dropout on, a frozen encoder stays in eval
    mode and under ``no_grad``, as in ``ptlib`` training), on teacher-forced
    captions of ``caption_len`` tokens (the decoder reads ``caption_len - 1``),
    with the caption loss.

    Args:
        model: A :class:`~ptlib.models.Captioner`; freeze its encoder beforehand
            to measure frozen-encoder training.
        img_size: Input image side (pixels).
        caption_len: Tokens per caption, ``<bos>`` and ``<eos>`` included.
        batch_sizes: Two (or more) batch sizes; the per-image figure is the
            slope between the smallest and the largest.
        amp_dtype: ``torch.bfloat16`` / ``torch.float16`` to measure under autocast,
            ``None`` for fp32.

    Returns:
        ``{"per_image_bytes", "fixed_saved_bytes", "saved_bytes_by_batch", ...}``
        plus everything :func:`static_training_bytes` returns.

    Raises:
        ValueError: If ``batch_sizes`` has fewer than two distinct positive sizes.
    """
    sizes = sorted(set(int(b) for b in batch_sizes))
    if len(sizes) < 2 or sizes[0] < 1:
        raise ValueError(
            f"batch_sizes={list(batch_sizes)}: give at least two distinct positive batch sizes"
        )
    was_training = model.training
    model.train()
    try:
        by_batch = {
            b: _saved_activation_bytes(model, b, img_size, caption_len, amp_dtype) for b in sizes
        }
    finally:
        model.train(was_training)
    small, large = sizes[0], sizes[-1]
    per_image = (by_batch[large] - by_batch[small]) / (large - small)
    fixed = max(0.0, by_batch[small] - small * per_image)
    return {
        "per_image_bytes": per_image,
        "fixed_saved_bytes": fixed,
        "saved_bytes_by_batch": {str(b): v for b, v in by_batch.items()},
        "amp_dtype": None if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
        **static_training_bytes(model),
    }


def implied_max_batch(
    measured: dict[str, Any], card_bytes: float = 24 * GIB, workspace_bytes: float = 1 * GIB
) -> int:
    """The largest batch whose estimated training bytes fit on a card.

    ``floor((card - workspace - static - fixed) / per_image)``; 0 if even the
    static state does not fit. An upper bound: the saved tensors are a lower
    bound of the peak (see the module docstring).

    Args:
        measured: From :func:`training_bytes`.
        card_bytes: Memory of the card (default 24 GiB, an RTX 4090).
        workspace_bytes: Set aside for the CUDA context, library workspaces and
            allocator slack (default 1 GiB, an assumption).

    Raises:
        ValueError: If ``measured`` lacks a positive ``per_image_bytes``.
    """
    per_image = float(measured.get("per_image_bytes", 0.0))
    if per_image <= 0:
        raise ValueError(
            f"measured['per_image_bytes']={per_image}: need a positive per-image figure "
            "(from ptlib.bench.batch_capacity.training_bytes)"
        )
    free = card_bytes - workspace_bytes - measured["static_bytes"] - measured["fixed_saved_bytes"]
    return max(0, int(free // per_image))
