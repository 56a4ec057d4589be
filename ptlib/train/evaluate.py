"""Caption a dataset split and score it: n-gram metrics, and correctness on shapes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ptlib.data.datasets import CaptionDataset, collate_captions
from ptlib.data.vocab import Vocabulary
from ptlib.metrics.captions import score_captions


@torch.no_grad()
def caption_dataset(
    model: nn.Module,
    dataset: CaptionDataset,
    vocab: Vocabulary,
    *,
    device: torch.device,
    method: str = "greedy",
    beam_size: int = 3,
    max_len: int | None = None,
    batch_size: int = 64,
    max_images: int = 0,
    show_progress: bool = False,
) -> tuple[dict[int, str], dict[int, list[str]]]:
    """Generate one caption per image.

    Args:
        model: A :class:`ptlib.models.Captioner` (its ``generate`` is used).
        dataset: An eval-mode dataset (all references per image).
        vocab: Decodes the generated ids.
        device: Where the model runs.
        method: ``"greedy"`` or ``"beam"``.
        beam_size: Beams per image for ``"beam"``.
        max_len: Most generated tokens (default: the decoder's).
        batch_size: Images per generation batch.
        max_images: Caption only the first this many images (0 = all).
        show_progress: Show a progress bar.

    Returns:
        ``(predictions, references)``: image id -> caption, image id -> references.
    """
    subset = dataset if not max_images else Subset(dataset, range(min(max_images, len(dataset))))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate_captions)
    predictions: dict[int, str] = {}
    references: dict[int, list[str]] = {}
    for batch in tqdm(loader, desc="captioning", disable=not show_progress):
        if len(batch) == 0:
            continue
        result = model.generate(
            batch.images.to(device), method=method, beam_size=beam_size, max_len=max_len
        )
        for image_id, ids, refs in zip(
            batch.image_ids.tolist(), result.tokens.tolist(), batch.references, strict=True
        ):
            predictions[image_id] = vocab.decode(ids)
            references[image_id] = list(refs)
    return predictions, references


def evaluate_captions(
    predictions: Mapping[int, str],
    references: Mapping[int, list[str]],
    *,
    metrics: tuple[str, ...] = ("BLEU", "METEOR", "ROUGE_L", "CIDEr", "SPICE"),
    instances: str | Path | None = None,
) -> dict[str, Any]:
    """Score generated captions against all references (and ground truth on shapes).

    Args:
        predictions: Image id -> generated caption.
        references: Image id -> reference captions.
        metrics: Which pycocoevalcap metrics to compute.
        instances: For the shapes dataset, the split's ``instances_*.json``: adds
            the caption-correctness metrics under ``"correctness"``.

    Returns:
        The metric dictionary of :func:`ptlib.metrics.score_captions`, plus
        ``"correctness"`` when ``instances`` is given.
    """
    scores: dict[str, Any] = score_captions(references, predictions, metrics=metrics)
    if instances is not None:
        from ptlib.metrics import correctness

        truth = correctness.load_ground_truth(instances)
        scores["correctness"] = correctness.score_correctness(predictions, truth)
    return scores
