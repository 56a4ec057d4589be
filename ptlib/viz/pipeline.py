"""The pipeline diagram shown in the book's introduction, drawn with matplotlib.

The six stages are drawn in two rows that read like a snake (left to right,
down, right to left) so that the diagram fits the book's column with every
text at 8 pt or more as displayed.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from ptlib.viz import style

_STAGES: tuple[tuple[str, str, str], ...] = (
    ("Image", "3 x H x W pixels", "#e0e0e0"),
    ("Visual encoder", "ViT (patches) or\nConvNeXt (stages)", "#c6dbef"),
    ("Projection", "Linear C -> d_model\n+ LayerNorm + position", "#c7e9c0"),
    ("Token pruning", "keep K of N tokens (random,\nnorm, CLS attention,\nlearned or merge)",
     "#fdd0a2"),
    ("Transformer decoder", "masked self-attention,\ncross-attention to the\nkept tokens, FFN",
     "#dadaeb"),
    ("Caption", '"a small red circle\nleft of a blue square"', "#e0e0e0"),
)

_WIDTH, _HEIGHT = 6.8, 3.7  # inches; the axes use inches as data units
_BOX_W, _BOX_H, _GAP = 1.9, 1.0, 0.45


def _draw_token_grid(ax: Axes, x: float, y: float, kept: np.ndarray, cell: float) -> None:
    """Draw a small grid of tokens with its top-left corner at (x, y): kept dark, pruned white."""
    rows, cols = kept.shape
    for r in range(rows):
        for c in range(cols):
            ax.add_patch(Rectangle((x + c * cell, y - (r + 1) * cell), cell * 0.9, cell * 0.9,
                                   facecolor="#525252" if kept[r, c] else "white",
                                   edgecolor="#525252", linewidth=0.5))


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12,
                                 color="#252525", linewidth=1.2))


def draw_pipeline(prune_ratio: float = 0.3, grid: int = 7, seed: int = 0) -> Figure:
    """Draw the captioner: encoder -> projection -> token pruning -> decoder -> caption.

    Args:
        prune_ratio: Fraction of visual tokens the illustrated pruner drops.
        grid: Side of the illustrated token grid (``grid * grid`` tokens).
        seed: Seed for which tokens the illustration keeps.

    Returns:
        The matplotlib figure (not shown; the caller displays or saves it), as
        wide as the book's column.
    """
    n_tokens = grid * grid
    n_kept = max(1, round((1 - prune_ratio) * n_tokens))
    rng = np.random.default_rng(seed)
    kept = np.zeros(n_tokens, dtype=bool)
    kept[rng.choice(n_tokens, size=n_kept, replace=False)] = True

    fig = style.figure(height=_HEIGHT, layout=None)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, _WIDTH)
    ax.set_ylim(0, _HEIGHT)
    ax.axis("off")
    top, bottom = _HEIGHT - 0.1 - _BOX_H, 1.3
    # row 1 left to right, row 2 right to left: (x of the box's left edge, y of its bottom)
    columns = [0.1 + i * (_BOX_W + _GAP) for i in range(3)]
    places = [(columns[0], top), (columns[1], top), (columns[2], top),
              (columns[2], bottom), (columns[1], bottom), (columns[0], bottom)]
    for (title, detail, colour), (x, y) in zip(_STAGES, places, strict=True):
        ax.add_patch(FancyBboxPatch((x, y), _BOX_W, _BOX_H,
                                    boxstyle="round,pad=0.02,rounding_size=0.1",
                                    facecolor=colour, edgecolor="#525252"))
        ax.text(x + _BOX_W / 2, y + _BOX_H - 0.17, title, ha="center", va="center",
                fontsize=style.FONT_SIZES["text"], weight="bold")
        ax.text(x + _BOX_W / 2, y + _BOX_H / 2 - 0.13, detail, ha="center", va="center",
                fontsize=style.FONT_SIZES["small"], linespacing=1.15)
    middle_top, middle_bottom = top + _BOX_H / 2, bottom + _BOX_H / 2
    _arrow(ax, (columns[0] + _BOX_W, middle_top), (columns[1], middle_top))
    _arrow(ax, (columns[1] + _BOX_W, middle_top), (columns[2], middle_top))
    _arrow(ax, (columns[2] + _BOX_W / 2, top), (columns[2] + _BOX_W / 2, bottom + _BOX_H))
    _arrow(ax, (columns[2], middle_bottom), (columns[1] + _BOX_W, middle_bottom))
    _arrow(ax, (columns[1], middle_bottom), (columns[0] + _BOX_W, middle_bottom))
    # the illustrated token grid, under the pruning box
    cell = 0.95 / grid
    _draw_token_grid(ax, columns[2] + 0.1, bottom - 0.15, kept.reshape(grid, grid), cell)
    ax.text(columns[2] + 0.25 + grid * cell, bottom - 0.15 - grid * cell / 2,
            f"{n_kept} of {n_tokens}\ntokens kept\n(ratio {prune_ratio:g})", ha="left",
            va="center", fontsize=style.FONT_SIZES["small"])
    # the words written so far feed the decoder from below
    _arrow(ax, (columns[1] + _BOX_W / 2, bottom - 0.45), (columns[1] + _BOX_W / 2, bottom))
    ax.text(columns[1] + _BOX_W / 2, bottom - 0.5, "caption tokens so far\n(teacher forcing "
            "in training,\nits own words in generation)", ha="center", va="top",
            fontsize=style.FONT_SIZES["small"])
    return fig
