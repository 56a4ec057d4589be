"""A confusion-matrix heatmap (true attribute in rows, named attribute in columns)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def draw_confusion_matrix(
    labels: Sequence[str],
    counts: np.ndarray | Sequence[Sequence[int]],
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Draw counts as a heatmap, each cell labelled with its count, rows normalised for colour.

    The colour of a cell is its share of its row (of the objects that truly
    have that attribute, the fraction named so), so rare rows stay readable;
    the number printed is the raw count.

    Args:
        labels: The attribute values, in row and column order.
        counts: ``(L, L)`` counts, ``counts[true][named]`` (e.g. from
            :func:`ptlib.metrics.confusion.shape_confusion_matrix`).
        title: The axes title.
        ax: Axes to draw into (default: a new figure).

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
        _, ax = plt.subplots(figsize=(1.0 + 0.7 * len(labels), 0.8 + 0.6 * len(labels)))
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for row in range(len(labels)):
        for col in range(len(labels)):
            colour = "white" if shares[row, col] > 0.6 else "black"
            ax.text(col, row, str(matrix[row, col]), ha="center", va="center", color=colour,
                    fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("named in the caption")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    figure = ax.figure
    figure.tight_layout()
    return figure
