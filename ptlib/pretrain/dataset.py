"""A map-style dataset over the pretext stream: images as tensors, with their targets."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from ptlib.data.transforms import build_transform
from ptlib.pretrain.scenes import PRETEXT_STREAM, draw_scene
from ptlib.pretrain.targets import scene_targets


@functools.cache
def _transform(img_size: int) -> Callable[[Any], Tensor]:
    return build_transform(img_size)


def image_tensor(image: Any) -> Tensor:
    """A PIL RGB image as the captioner sees it (:func:`ptlib.data.transforms.build_transform`).

    Returns:
        ``(3, H, W)`` float tensor, ImageNet-normalised.
    """
    return _transform(image.size[0])(image)


class PretextDataset(Dataset):
    """Images ``start .. start + length - 1`` of a pretext stream, drawn when read.

    Args:
        length: Number of images.
        img_size: Image side in pixels.
        grid: ``(h, w)`` token grid of the encoder being trained.
        start: First stream index.
        seed: Stream seed.
        stream: Stream code (:mod:`ptlib.pretrain.scenes`).
        max_objects: At most this many objects per image.
        min_cover: See :func:`ptlib.pretrain.targets.token_owners`.

    Each item is ``{"images": (3, H, W), "colour"/"shape"/"size": (N,),
    "presence": (60,), "count": ()}``; the default collate stacks them.
    """

    def __init__(self, length: int, *, img_size: int, grid: tuple[int, int], start: int = 0,
                 seed: int = 0, stream: int = PRETEXT_STREAM, max_objects: int = 4,
                 min_cover: float = 0.25) -> None:
        if length < 1:
            raise ValueError(f"PretextDataset: length must be >= 1, got {length}")
        self.length, self.img_size, self.grid = length, img_size, tuple(grid)
        self.start, self.seed, self.stream = start, seed, stream
        self.max_objects, self.min_cover = max_objects, min_cover

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} outside 0..{self.length - 1}")
        scene = draw_scene(self.start + index, img_size=self.img_size,
                           max_objects=self.max_objects, seed=self.seed, stream=self.stream)
        targets = scene_targets(scene.objects, self.img_size, self.grid, self.min_cover)
        return {"images": image_tensor(scene.image), **targets}
