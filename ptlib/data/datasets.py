"""Caption datasets and the batch collate function.

:class:`CaptionDataset` reads any COCO-format caption data (the shapes
dataset, COCO 2014/2017, the Karpathy split). In ``"train"`` mode each item
carries one reference chosen at random per image and epoch (reproducible from
``seed`` and the epoch set with :meth:`CaptionDataset.set_epoch`); in
``"eval"`` mode the first reference. Both modes carry all references for
scoring. :func:`collate_captions` pads the token ids and returns a
:class:`CaptionBatch`.

Bad images follow ``on_bad_image``: ``"raise"`` stops with a
:class:`~ptlib.data.images.BadImageError` naming the file and the reason;
``"skip"`` leaves the image out and reports it (``dataset.skipped``, a
warning, and ``batch.skipped`` for images found bad while loading).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ptlib.data.annotations import CaptionRecord, read_caption_annotations
from ptlib.data.images import DEFAULT_MAX_PIXELS, BadImageError, load_rgb, resolve_image_path
from ptlib.data.transforms import build_transform
from ptlib.data.vocab import Vocabulary
from ptlib.tokens import PAD_ID

BadImagePolicy = Literal["raise", "skip"]


class CaptionItem(NamedTuple):
    """One dataset item.

    Attributes:
        image: ``(3, H, W)`` float tensor.
        tokens: ``(L,)`` long tensor ``<bos> ... <eos>`` of the chosen reference,
            or ``None`` when the dataset has no vocabulary.
        image_id: The COCO image id.
        references: All reference captions of the image.
    """

    image: torch.Tensor
    tokens: torch.Tensor | None
    image_id: int
    references: tuple[str, ...]


class SkippedItem(NamedTuple):
    """What ``__getitem__`` returns for an image found bad while loading (policy ``"skip"``)."""

    file: str
    reason: str


@dataclass
class CaptionBatch:
    """A padded batch.

    Attributes:
        images: ``(B, 3, H, W)`` float tensor.
        tokens: ``(B, T)`` long tensor, ``<bos>`` (1) first, ``<eos>`` (2) last, padded
            with ``<pad>`` (0); ``None`` without a vocabulary.
        lengths: ``(B,)`` long tensor, tokens per caption including ``<bos>``/``<eos>``.
        image_ids: ``(B,)`` long tensor.
        references: For each image, all its reference captions.
        skipped: ``(file, reason)`` of items of this batch left out as bad images.
    """

    images: torch.Tensor
    tokens: torch.Tensor | None
    lengths: torch.Tensor | None
    image_ids: torch.Tensor
    references: list[tuple[str, ...]]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.image_ids.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> CaptionBatch:
        """The batch with its tensors on ``device``."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return CaptionBatch(
            images=self.images.to(device, non_blocking=non_blocking),
            tokens=move(self.tokens),
            lengths=move(self.lengths),
            image_ids=self.image_ids.to(device, non_blocking=non_blocking),
            references=self.references,
            skipped=self.skipped,
        )

    def pin_memory(self) -> CaptionBatch:
        """Pinned-memory copy (called by ``DataLoader(pin_memory=True)``)."""
        return CaptionBatch(
            images=self.images.pin_memory(),
            tokens=None if self.tokens is None else self.tokens.pin_memory(),
            lengths=None if self.lengths is None else self.lengths.pin_memory(),
            image_ids=self.image_ids.pin_memory(),
            references=self.references,
            skipped=self.skipped,
        )


def collate_captions(
    items: Sequence[CaptionItem | SkippedItem], pad_id: int = PAD_ID
) -> CaptionBatch:
    """Stack images and pad token ids into a :class:`CaptionBatch`.

    Items that are :class:`SkippedItem` (bad images under ``on_bad_image="skip"``)
    are left out and listed in ``batch.skipped``; a batch where every item was
    bad has ``len(batch) == 0`` and ``images`` of shape ``(0,)``.

    Args:
        items: Dataset items.
        pad_id: Id used for padding (``<pad>`` = 0).
    """
    skipped = [(s.file, s.reason) for s in items if isinstance(s, SkippedItem)]
    good = [i for i in items if not isinstance(i, SkippedItem)]
    image_ids = torch.tensor([i.image_id for i in good], dtype=torch.long)
    references = [i.references for i in good]
    if not good:
        return CaptionBatch(torch.empty(0), None, None, image_ids, references, skipped)
    images = torch.stack([i.image for i in good])
    if any(i.tokens is None for i in good):
        return CaptionBatch(images, None, None, image_ids, references, skipped)
    lengths = torch.tensor([len(i.tokens) for i in good], dtype=torch.long)
    tokens = torch.full((len(good), int(lengths.max())), pad_id, dtype=torch.long)
    for row, item in enumerate(good):
        tokens[row, : len(item.tokens)] = item.tokens
    return CaptionBatch(images, tokens, lengths, image_ids, references, skipped)


class CaptionDataset(Dataset):
    """Images and their reference captions, from a COCO-format captions file.

    Args:
        image_dir: Folder the ``file_name`` entries are relative to.
        annotations: A COCO captions JSON file, or a list of
            :class:`~ptlib.data.annotations.CaptionRecord` (e.g. from
            :func:`ptlib.data.coco.read_karpathy_split`).
        vocab: Encodes the chosen reference; ``None`` yields no tokens.
        transform: PIL image -> ``(3, H, W)`` tensor; default
            :func:`~ptlib.data.transforms.build_transform` with ``img_size``.
        img_size: Input side for the default transform.
        mode: ``"train"`` (a random reference per image and epoch) or
            ``"eval"`` (the first reference).
        train_reference: In ``"train"`` mode, ``"random"`` (a reference drawn per
            image and epoch) or ``"first"`` (always the first: one fixed target
            caption per image, which a model can memorise word for word).
        max_len: Truncate token sequences to this many ids (``<bos>``/``<eos>`` included).
        seed: Seeds the choice of reference (with the epoch and the image id).
        on_bad_image: ``"raise"`` or ``"skip"`` (see the module docstring).
        verify_images: Decode every image once now, so that ``skipped`` lists
            all bad images before training (slow for COCO: minutes).
        max_pixels: Refuse larger images (decompression bombs).

    Attributes:
        records: The usable images and their captions.
        skipped: ``(file, reason)`` of every image (and caption) left out.

    Raises:
        BadImageError: With ``on_bad_image="raise"``, for a path that leaves
            ``image_dir`` or a file that is missing, empty or (with
            ``verify_images``) unreadable.
        AnnotationError: If the captions file is malformed (names file and key).
        ValueError: For a bad argument, or when no usable image is left.
    """

    def __init__(
        self,
        image_dir: str | Path,
        annotations: str | Path | Sequence[CaptionRecord],
        vocab: Vocabulary | None = None,
        *,
        transform: Callable | None = None,
        img_size: int | None = None,
        mode: Literal["train", "eval"] = "train",
        train_reference: Literal["random", "first"] = "random",
        max_len: int | None = None,
        seed: int = 0,
        on_bad_image: BadImagePolicy = "raise",
        verify_images: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if train_reference not in ("random", "first"):
            raise ValueError(
                f"train_reference must be 'random' or 'first', got {train_reference!r}"
            )
        self.train_reference = train_reference
        if on_bad_image not in ("raise", "skip"):
            raise ValueError(f"on_bad_image must be 'raise' or 'skip', got {on_bad_image!r}")
        if transform is None:
            if img_size is None:
                raise ValueError("CaptionDataset needs transform= or img_size= (the input size)")
            transform = build_transform(img_size, train=mode == "train")
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder {self.image_dir} does not exist")
        self.vocab = vocab
        self.transform = transform
        self.mode = mode
        self.max_len = max_len
        self.seed = int(seed)
        self.epoch = 0
        self.on_bad_image: BadImagePolicy = on_bad_image
        self.max_pixels = max_pixels
        self.skipped: list[tuple[str, str]] = []
        if isinstance(annotations, str | Path):
            self.source = str(annotations)
            records, dropped = read_caption_annotations(annotations)
            self.skipped.extend(dropped)
        else:
            self.source = "records"
            records = list(annotations)
        self.records: list[CaptionRecord] = [r for r in records if self._usable(r, verify_images)]
        if self.skipped:
            shown = "; ".join(f"{f}: {why}" for f, why in self.skipped[:3])
            more = f" (and {len(self.skipped) - 3} more)" if len(self.skipped) > 3 else ""
            warnings.warn(
                f"CaptionDataset({self.source}): skipped {len(self.skipped)} item(s): "
                f"{shown}{more}; see dataset.skipped",
                stacklevel=2,
            )
        if not self.records:
            raise ValueError(
                f"CaptionDataset({self.source}): no usable image left in {self.image_dir} "
                f"({len(self.skipped)} skipped)"
            )

    def _usable(self, record: CaptionRecord, verify: bool) -> bool:
        try:
            path = resolve_image_path(self.image_dir, record.file_name)
            if verify:
                load_rgb(path, max_pixels=self.max_pixels)
            elif not path.is_file():
                raise BadImageError(path, "file not found (listed in the annotations, missing on disk)")
            elif path.stat().st_size == 0:
                raise BadImageError(path, "empty file (0 bytes)")
        except BadImageError as err:
            if self.on_bad_image == "raise":
                raise
            self.skipped.append((err.path, err.reason))
            return False
        return True

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Choose the training references of this epoch (call before making the iterator).

        DataLoader workers copy the dataset when an iterator starts, so call this
        before ``iter(loader)`` (with ``persistent_workers=False``).
        """
        self.epoch = int(epoch)

    def reference_index(self, index: int) -> int:
        """Which reference of item ``index`` the current epoch uses."""
        record = self.records[index]
        if self.mode == "eval" or self.train_reference == "first" or len(record.captions) == 1:
            return 0
        rng = np.random.default_rng([self.seed, self.epoch, record.image_id])
        return int(rng.integers(len(record.captions)))

    def load_image(self, index: int):  # -> PIL.Image.Image
        """The RGB image of item ``index`` (raises :class:`~ptlib.data.images.BadImageError`)."""
        record = self.records[index]
        return load_rgb(record.file_name, root=self.image_dir, max_pixels=self.max_pixels)

    def __getitem__(self, index: int) -> CaptionItem | SkippedItem:
        record = self.records[index]
        try:
            image = self.load_image(index)
        except BadImageError as err:
            if self.on_bad_image == "raise":
                raise
            self.skipped.append((err.path, err.reason))
            warnings.warn(f"skipping {err}", stacklevel=2)
            return SkippedItem(err.path, err.reason)
        tokens = None
        if self.vocab is not None:
            caption = record.captions[self.reference_index(index)]
            tokens = torch.tensor(self.vocab.encode(caption, max_len=self.max_len), dtype=torch.long)
        return CaptionItem(self.transform(image), tokens, record.image_id, record.captions)

    def all_captions(self) -> list[str]:
        """Every reference caption of every usable image (e.g. to build a vocabulary)."""
        return [c for r in self.records for c in r.captions]
