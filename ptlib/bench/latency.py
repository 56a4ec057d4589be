"""Captioning latency of several captioners, measured side by side.

:func:`caption_latency` captions the same batch with every model, round after
round (model A, B, C, A, B, C, ...), so a slow moment of the machine hits all
of them alike, and keeps the median of the rounds. Generation is greedy with
the KV cache and a fixed caption length (``stop_at_eos=False``), so every model
does the same number of decoding steps whatever its (random) weights predict.
Benchmarks report ratios between models timed in one run, never absolute
targets.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

import torch
from torch import nn


def caption_latency(
    models: Mapping[str, nn.Module],
    img_size: int,
    *,
    batch_size: int = 8,
    caption_tokens: int = 20,
    repeats: int = 5,
    warmup: int = 1,
) -> dict[str, dict[str, float]]:
    """Median seconds to caption one batch, per model, with interleaved repetitions.

    Args:
        models: ``{label: Captioner}``; all take ``img_size`` images.
        img_size: Input image side (pixels).
        batch_size: Images per batch.
        caption_tokens: Tokens generated per caption (no early stop).
        repeats: Timed rounds; each round times every model once.
        warmup: Untimed rounds before (first calls allocate and pick kernels).

    Returns:
        ``{label: {"median_s", "min_s", "images_per_s", "tokens"}}`` where
        ``tokens`` is the number of visual tokens the decoder attended to.

    Raises:
        ValueError: If ``models`` is empty or a count is not positive.
    """
    if not models:
        raise ValueError("caption_latency: models is empty; pass {label: captioner}")
    for name, value in (
        ("batch_size", batch_size),
        ("caption_tokens", caption_tokens),
        ("repeats", repeats),
    ):
        if value < 1:
            raise ValueError(f"caption_latency: {name}={value} must be at least 1")
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, img_size, img_size, generator=generator)
    times: dict[str, list[float]] = {label: [] for label in models}
    memory_tokens: dict[str, int] = {}

    def caption(label: str) -> float:
        model = models[label]
        start = time.perf_counter()
        result = model.generate(images, max_len=caption_tokens, stop_at_eos=False)
        elapsed = time.perf_counter() - start
        memory_tokens[label] = int(result.kept_indices.shape[1])
        return elapsed

    for model in models.values():
        model.eval()
    for _ in range(warmup):
        for label in models:
            caption(label)
    for _ in range(repeats):
        for label in models:
            times[label].append(caption(label))
    return {
        label: {
            "median_s": statistics.median(values),
            "min_s": min(values),
            "images_per_s": batch_size / statistics.median(values),
            "tokens": memory_tokens[label],
        }
        for label, values in times.items()
    }
