"""Pretext targets: what each encoder token should know, and what the whole image holds.

Dense targets, one per token: the colour, shape and size of the object that
covers the token's patch (the ``stride`` x ``stride`` pixels the token stands
for), or ``background``. A token's patch is given to the object that covers the
largest part of it when that part is at least ``min_cover`` of the patch
(objects never overlap); otherwise the token is background. An object too
small to reach ``min_cover`` anywhere still owns the one patch it covers most,
so every object is seen by at least one token. Global targets,
one per image: which of the 60 size-colour-shape kinds are present (multi-hot),
and how many objects there are (1..4).

Class ``0`` of every dense target is background; the attribute values follow
the grammar's order (:data:`ptlib.data.grammar.COLOURS`, ``SHAPES``, ``SIZES``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ptlib.data.grammar import COLOURS, SHAPES, SIZES
from ptlib.data.shapes import ShapeObject

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "colour": ("background", *COLOURS),
    "shape": ("background", *SHAPES),
    "size": ("background", *SIZES),
}
"""Class names of each dense (per-token) target; index 0 is background."""

KINDS: tuple[tuple[str, str, str], ...] = tuple(
    (size, colour, shape) for size in SIZES for colour in COLOURS for shape in SHAPES
)
"""The 60 ``(size, colour, shape)`` kinds of the presence target, in this order."""

MAX_COUNT = 4
"""Most objects in an image; the count target is ``objects - 1`` in ``0..MAX_COUNT-1``."""

RASTER = 4
"""Pixels are split RASTER x RASTER ways when measuring how much of a patch an object covers."""


def object_id_map(objects: Sequence[ShapeObject], img_size: int, raster: int = RASTER
                  ) -> np.ndarray:
    """Which object covers each (sub)pixel: ``0`` background, ``k + 1`` object ``k``.

    Args:
        objects: The drawn objects (pixel coordinates).
        img_size: Image side in pixels.
        raster: Sub-pixels per pixel along each side.

    Returns:
        ``(img_size * raster, img_size * raster)`` int array.
    """
    side = img_size * raster
    canvas = Image.new("I", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    for k, obj in enumerate(objects):
        points = [(x * raster, y * raster) for x, y in zip(obj.polygon[0::2], obj.polygon[1::2],
                                                           strict=True)]
        draw.polygon(points, fill=k + 1)
    return np.asarray(canvas, dtype=np.int64)


def patch_cover(objects: Sequence[ShapeObject], img_size: int, grid: tuple[int, int]
                ) -> np.ndarray:
    """How much of each token's patch each object covers.

    Args:
        objects: The drawn objects.
        img_size: Image side in pixels.
        grid: ``(h, w)`` token grid; the patch of token ``(r, c)`` spans
            ``img_size / h`` pixels from row ``r * img_size / h``.

    Returns:
        ``(h * w, len(objects))`` fractions in [0, 1], tokens in row-major grid order.
    """
    ids = object_id_map(objects, img_size)
    h, w = grid
    if ids.shape[0] % h or ids.shape[1] % w:
        raise ValueError(f"grid {grid} does not divide the {img_size} px image evenly")
    cells = ids.reshape(h, ids.shape[0] // h, w, ids.shape[1] // w).transpose(0, 2, 1, 3)
    cells = cells.reshape(h * w, -1)  # (N, sub-pixels per patch)
    cover = [(cells == k + 1).mean(axis=1) for k in range(len(objects))]
    return np.stack(cover, axis=1) if cover else np.zeros((h * w, 0))


def owners_from_cover(cover: np.ndarray, min_cover: float = 0.25) -> np.ndarray:
    """The owner of each patch from :func:`patch_cover`: ``-1`` background, else an object.

    A patch belongs to the object covering most of it, if at least ``min_cover``;
    an object that owns no patch then gets the one it covers most, if that is free.
    """
    if cover.shape[1] == 0:
        return np.full(len(cover), -1, dtype=np.int64)
    owners = np.where(cover.max(axis=1) >= min_cover, cover.argmax(axis=1), -1)
    for k in range(cover.shape[1]):
        if not (owners == k).any():
            anchor = int(cover[:, k].argmax())
            if owners[anchor] == -1:
                owners[anchor] = k
    return owners


def token_owners(objects: Sequence[ShapeObject], img_size: int, grid: tuple[int, int],
                 min_cover: float = 0.25) -> np.ndarray:
    """The object that each token's patch belongs to.

    Args:
        objects: The drawn objects.
        img_size: Image side in pixels.
        grid: ``(h, w)`` token grid.
        min_cover: Smallest covered fraction of a patch that makes it an object's.

    Returns:
        ``(h * w,)`` int array in row-major grid order: ``-1`` background, else the
        index into ``objects``.
    """
    return owners_from_cover(patch_cover(objects, img_size, grid), min_cover)


def scene_targets(objects: Sequence[ShapeObject], img_size: int, grid: tuple[int, int],
                  min_cover: float = 0.25) -> dict[str, Tensor]:
    """Every pretext target of one image.

    Args:
        objects: The drawn objects.
        img_size: Image side in pixels.
        grid: ``(h, w)`` token grid of the encoder.
        min_cover: See :func:`token_owners`.

    Returns:
        ``colour``, ``shape``, ``size``: ``(N,)`` long class indices (0 = background,
        see :data:`ATTRIBUTES`); ``presence``: ``(60,)`` float multi-hot over
        :data:`KINDS`; ``count``: ``()`` long, the number of objects minus one.
    """
    owners = token_owners(objects, img_size, grid, min_cover)
    targets: dict[str, Tensor] = {}
    for name, classes in ATTRIBUTES.items():
        labels = np.zeros(len(owners), dtype=np.int64)
        for k, obj in enumerate(objects):
            labels[owners == k] = classes.index(getattr(obj, name))
        targets[name] = torch.from_numpy(labels)
    presence = torch.zeros(len(KINDS))
    for obj in objects:
        presence[KINDS.index((obj.size, obj.colour, obj.shape))] = 1.0
    targets["presence"] = presence
    targets["count"] = torch.tensor(min(len(objects), MAX_COUNT) - 1)
    return targets
