"""The one loop that captions a split: batch, generate, decode.

Evaluation (:func:`ptlib.train.evaluate.caption_dataset`), the pruning study
(:func:`ptlib.experiments.study_eval.score_pruning`), the pointing game
(:func:`ptlib.experiments.grounding.score_pointing`) and the chapter-8 demo all
caption through here, so a caption means the same thing everywhere::

    for batch in caption_split(model, dataset, vocab, batch_size=64):
        batch.image_ids, batch.captions     # ids and decoded text
        batch.kept_indices                  # (B, K) grid cells the decoder saw
        batch.attention                     # (B, L, M) with need_attention=True

To caption with another pruning, pass the re-pruned captioner as ``model``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ptlib.data.datasets import CaptionItem, collate_captions
from ptlib.data.vocab import Vocabulary
from ptlib.metrics.grounding import generated_words
from ptlib.models.captioner import Captioner


@dataclass
class CaptionedBatch:
    """One batch of generated captions, on the CPU.

    Attributes:
        image_ids: The ``B`` image ids (empty for images outside a dataset).
        references: Each image's reference captions (empty without a dataset).
        tokens: ``(B, L)`` generated ids without ``<bos>``, ``<pad>`` after ``<eos>``.
        scores: ``(B,)`` total log-probability of each caption.
        captions: The ``B`` decoded captions (:meth:`ptlib.data.Vocabulary.decode`).
        words: Each caption's words, one per generated token up to ``<eos>``, so
            ``words[b][t]`` lines up with ``attention[b, t]``.
        kept_indices: ``(B, K)`` grid positions of the visual tokens the decoder
            attended to (the pruner's choice; every position without pruning).
        attention: ``(B, L, M)`` cross-attention of the last decoder layer per
            generated token, or ``None`` unless asked for.
    """

    image_ids: list[int]
    references: list[tuple[str, ...]]
    tokens: Tensor
    scores: Tensor
    captions: list[str]
    words: list[list[str]]
    kept_indices: Tensor
    attention: Tensor | None = None

    def __len__(self) -> int:
        return len(self.captions)


@torch.no_grad()
def caption_images(
    model: Captioner,
    images: Tensor,
    vocab: Vocabulary,
    *,
    method: str = "greedy",
    beam_size: int = 3,
    max_len: int | None = None,
    need_attention: bool = False,
    image_ids: Sequence[int] = (),
    references: Sequence[tuple[str, ...]] = (),
) -> CaptionedBatch:
    """Caption a batch of images and decode the captions.

    Args:
        model: A captioner, pruned as it should caption.
        images: ``(B, 3, H, W)`` normalised images, on the model's device.
        vocab: Decodes the generated ids.
        method: ``"greedy"`` or ``"beam"``.
        beam_size: Beams per image for ``"beam"``.
        max_len: Most generated tokens (default: the decoder's).
        need_attention: Also record the cross-attention of every generated token.
        image_ids: The images' ids, carried into the result.
        references: The images' reference captions, carried into the result.

    Returns:
        A :class:`CaptionedBatch`.
    """
    result = model.generate(images, method=method, beam_size=beam_size, max_len=max_len,
                            return_attention=need_attention)
    tokens = result.tokens.cpu()
    return CaptionedBatch(
        image_ids=[int(i) for i in image_ids],
        references=[tuple(r) for r in references],
        tokens=tokens,
        scores=result.scores.cpu(),
        captions=[vocab.decode(ids) for ids in tokens.tolist()],
        words=generated_words(tokens, vocab.itos),
        kept_indices=result.kept_indices.cpu(),
        attention=result.attention.cpu() if need_attention else None,
    )


def caption_split(
    model: Captioner,
    dataset: Dataset | Sequence[CaptionItem],
    vocab: Vocabulary,
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    method: str = "greedy",
    beam_size: int = 3,
    max_len: int | None = None,
    max_images: int = 0,
    need_attention: bool = False,
    show_progress: bool = False,
) -> Iterator[CaptionedBatch]:
    """Caption a split in order, one batch at a time.

    Images the dataset skips as bad (``on_bad_image="skip"``) are left out.
    The global random state is left untouched (the loader has its own generator).

    Args:
        model: A captioner, pruned as it should caption (e.g. re-pruned at another ratio).
        dataset: An eval-mode :class:`~ptlib.data.CaptionDataset`, or any sequence
            of its items (e.g. a split held in memory).
        vocab: Decodes the generated ids.
        batch_size: Images per generation batch.
        device: Where the images go (default: the model's device).
        method: ``"greedy"`` or ``"beam"``.
        beam_size: Beams per image for ``"beam"``.
        max_len: Most generated tokens (default: the decoder's).
        max_images: Caption only the first this many images (0 = all).
        need_attention: Record cross-attention (the batches' ``attention``).
        show_progress: Show a progress bar.

    Yields:
        One :class:`CaptionedBatch` per batch, in dataset order.

    Raises:
        ValueError: If ``batch_size`` is below 1 or ``max_images`` is negative.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if max_images < 0:
        raise ValueError(f"max_images must be 0 (all) or more, got {max_images}")
    if device is None:
        device = next(model.parameters()).device
    subset = dataset if not max_images else Subset(dataset, range(min(max_images, len(dataset))))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate_captions,
                        generator=torch.Generator())  # leaves the global RNG untouched
    for batch in tqdm(loader, desc="captioning", disable=not show_progress):
        if len(batch) == 0:
            continue
        yield caption_images(model, batch.images.to(device), vocab, method=method,
                             beam_size=beam_size, max_len=max_len, need_attention=need_attention,
                             image_ids=batch.image_ids.tolist(), references=batch.references)
