"""Images with their captions set as text under them, at a size a reader can read.

Chapters 1 and 6 show pictures next to the captions written for them. Drawn
inside a wide figure that the page then shrinks, such text ends up a few pixels
high; :func:`image_grid` instead sizes the figure to the column and wraps each
caption to the width of its panel at 8 pt.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from ptlib.viz import style


def _caption_text(caption: str | Sequence[str] | None, width_in: float) -> str:
    if caption is None:
        return ""
    lines = [caption] if isinstance(caption, str) else list(caption)
    return "\n".join(style.wrap(line, width_in, indent="   ") for line in lines)


def image_grid(
    images: Sequence[Image.Image | np.ndarray],
    captions: Sequence[str | Sequence[str] | None] | None = None,
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 3,
    width_fraction: float = 1.0,
    suptitle: str = "",
) -> Figure:
    """Images in a grid, each with its title above and its caption text below.

    The figure spans ``width_fraction`` of the book's column; captions are
    wrapped to their panel at :data:`~ptlib.viz.style.FONT_SIZES` ``["small"]``
    (8 pt) and the figure grows in height to hold them. Panels keep the image's
    pixel coordinates, so boxes can be added afterwards:
    ``fig.axes[i].add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False))``.

    Args:
        images: ``(H, W[, 3])`` arrays or PIL images.
        captions: One per image: a string, a list of lines (e.g. greedy, beam and
            reference captions) or ``None``.
        titles: One short title per image (e.g. ``"test image 12"``).
        ncols: Images per row (fewer if there are fewer images).
        width_fraction: Share of the column's width, in ``(0, 1]``.
        suptitle: A title above the grid.

    Returns:
        The figure; ``fig.axes[i]`` shows ``images[i]``.

    Raises:
        ValueError: If ``captions`` or ``titles`` do not give one entry per image,
            or there are no images.
    """
    if not images:
        raise ValueError("images is empty: pass at least one image")
    for name, values in (("captions", captions), ("titles", titles)):
        if values is not None and len(values) != len(images):
            raise ValueError(f"{name} has {len(values)} entries for {len(images)} images")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    pictures = [np.asarray(image) for image in images]
    ncols = min(ncols, len(pictures))
    nrows = -(-len(pictures) // ncols)
    width = style.figure_width(width_fraction)
    panel = width / ncols
    texts = [_caption_text(None if captions is None else captions[i], panel - 0.15)
             for i in range(len(pictures))]
    line_in = style.FONT_SIZES["small"] * 1.25 / 72
    height = 0.0
    for row in range(nrows):
        members = range(row * ncols, min((row + 1) * ncols, len(pictures)))
        aspect = max(pictures[i].shape[0] / pictures[i].shape[1] for i in members)
        lines = max((texts[i].count("\n") + 1 if texts[i] else 0) for i in members)
        height += (panel - 0.1) * aspect + lines * line_in + (0.3 if titles else 0.1) + 0.1
    height += 0.3 if suptitle else 0.0
    fig, axes = style.subplots(nrows, ncols, width_fraction=width_fraction, height=height,
                               squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= len(pictures):
            ax.remove()
            continue
        ax.imshow(pictures[index])
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[index], fontsize=style.FONT_SIZES["text"])
        if texts[index]:
            ax.set_xlabel(texts[index], fontsize=style.FONT_SIZES["small"], loc="left",
                          multialignment="left")
    if suptitle:
        fig.suptitle(suptitle)
    return fig
