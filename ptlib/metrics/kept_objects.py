"""Kept-object recall: how much of the objects' area survives token pruning.

A visual token covers one cell of the encoder's grid. When a pruner drops tokens,
the decoder can no longer see the pixels under them. Kept-object recall is the
fraction of the ground-truth objects' box area that lies under kept cells: 1.0
means every object is still fully visible, 0.5 that half of their area is gone.
Boxes stand in for the objects' exact outlines (a shape fills part of its box).
For token merging the kept cells are the merge targets; the merged-away tokens are
averaged into them, so their content is diluted, not gone, and the recall
understates what the decoder still sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ptlib.metrics.correctness import SceneTruth


def cell_object_area(
    truth: SceneTruth, grid: tuple[int, int], image_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Object box area under each grid cell, summed over the image's objects.

    Args:
        truth: The image's ground truth (boxes in pixels of the stored image).
        grid: ``(h, w)`` token grid the encoder produces.
        image_size: ``(height, width)`` the boxes are measured in (default: the
            stored image's). The grid spans the whole image.

    Returns:
        ``(h * w,)`` float array in row-major cell order (the token order), in
        pixels squared. Overlapping objects each count their own area.
    """
    height, width = image_size if image_size is not None else (truth.height, truth.width)
    rows, cols = grid
    cell_h, cell_w = height / rows, width / cols
    top = np.arange(rows) * cell_h
    left = np.arange(cols) * cell_w
    area = np.zeros((rows, cols))
    for obj in truth.objects:
        x, y, w, h = obj.bbox
        overlap_y = np.clip(np.minimum(top + cell_h, y + h) - np.maximum(top, y), 0, None)
        overlap_x = np.clip(np.minimum(left + cell_w, x + w) - np.maximum(left, x), 0, None)
        area += np.outer(overlap_y, overlap_x)
    return area.reshape(-1)


def kept_object_recall(cell_area: np.ndarray, kept_indices: Sequence[int] | np.ndarray) -> float | None:
    """Fraction of object area under the kept cells.

    Args:
        cell_area: ``(N,)`` from :func:`cell_object_area`.
        kept_indices: ``(K,)`` grid positions of the kept tokens (duplicates count once).

    Returns:
        A number in ``[0, 1]``, or ``None`` for an image without objects.

    Raises:
        ValueError: If an index is outside the grid.
    """
    kept = np.unique(np.asarray(kept_indices, dtype=np.int64))
    if kept.size and (kept.min() < 0 or kept.max() >= cell_area.size):
        raise ValueError(
            f"kept_indices must lie in [0, {cell_area.size}), got {kept.min()}..{kept.max()}"
        )
    total = float(cell_area.sum())
    if total <= 0:
        return None
    return float(cell_area[kept].sum()) / total
