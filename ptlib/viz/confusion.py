"""A confusion-matrix heatmap (true attribute in rows, named attribute in columns)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ptlib.viz import style


def draw_confusion_matrix(
    labels: Sequence[str],
    counts: np.ndarray | Sequence[Sequence[int]],
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Draw counts as a heatmap, each cell labelled with its count, rows normalised for colour.

    The colour of a cell is its share of its row (of the objects that truly
    have that attribute, the fraction named so), so rare rows stay readable;
    the number printed is the raw count. A colour bar gives the share.

    Args:
        labels: The attribute values, in row and column order.
        counts: ``(L, L)`` counts, ``counts[true][named]`` (e.g. from
            :func:`ptlib.metrics.confusion.shape_confusion_matrix`).
        title: The axes title.
        ax: Axes to draw into (default: a new figure, half the column wide); its
            colour bar takes room from it.

    Returns:
        The figure drawn into.

    Raises:
        ValueError: If ``counts`` is not a square matrix matching ``labels``.
    """
    matrix = np.asarray(counts, dtype=np.int64)
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"counts has shape {matrix.shape}, expected {(len(labels), len(labels))} "
                         f"for {len(labels)} labels")
    if ax is None:
        side = min(style.TEXT_WIDTH_IN, 1.6 + 0.42 * len(labels))
        _, ax = style.subplots(width_fraction=side / style.TEXT_WIDTH_IN,
                               height=1.2 + 0.36 * len(labels))
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    with style.style_context():
        image = ax.imshow(shares, cmap=style.HEATMAP_CMAP, vmin=0.0, vmax=1.0)
        for row in range(len(labels)):
            for col in range(len(labels)):
                colour = "black" if shares[row, col] > 0.55 else "white"
                ax.text(col, row, str(matrix[row, col]), ha="center", va="center",
                        color=colour, fontsize=style.FONT_SIZES["small"])
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right",
                      fontsize=style.FONT_SIZES["small"])
        ax.set_yticks(range(len(labels)), labels, fontsize=style.FONT_SIZES["small"])
        ax.set_xlabel("named in the caption", fontsize=style.FONT_SIZES["text"])
        ax.set_ylabel("true", fontsize=style.FONT_SIZES["text"])
        if title:
            ax.set_title(title, fontsize=style.FONT_SIZES["text"])
        style.colorbar(image, ax, "share of the row")
    figure = ax.figure
    if figure.get_layout_engine() is None:  # a caller's plain figure: lay it out as before
        figure.tight_layout()
    return figure
