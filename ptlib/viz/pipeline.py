"""The pipeline diagram shown in the book's introduction, drawn with matplotlib."""

from __future__ import annotations

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

_STAGES: tuple[tuple[str, str, str], ...] = (
    ("Image", "3 x H x W", "#dddddd"),
    ("Visual encoder", "ViT (patches) or\nConvNeXt (stages)", "#9ecae1"),
    ("Projection", "Linear C -> d_model\n+ LayerNorm + position", "#c7e9c0"),
    ("Token pruning", "keep K of N tokens\n(random, norm, CLS attn,\nlearned, merge, ...)", "#fdd0a2"),
    ("Transformer decoder", "masked self-attention\ncross-attention\nFFN (x n_layers)", "#bcbddc"),
    ("Caption", '"a small red circle\nleft of a blue square"', "#dddddd"),
)


def _draw_token_grid(ax: plt.Axes, x: float, y: float, kept: np.ndarray, cell: float) -> None:
    """Draw a small grid of tokens at (x, y), greying out the pruned ones."""
    rows, cols = kept.shape
    for r in range(rows):
        for c in range(cols):
            colour = "#e6550d" if kept[r, c] else "#f0f0f0"
            ax.add_patch(
                Rectangle(
                    (x + c * cell, y - r * cell),
                    cell * 0.9,
                    cell * 0.9,
                    facecolor=colour,
                    edgecolor="#636363",
                    linewidth=0.4,
                )
            )


def draw_pipeline(prune_ratio: float = 0.3, grid: int = 7, seed: int = 0) -> Figure:
    """Draw the captioner: encoder -> projection -> token pruning -> decoder -> caption.

    Args:
        prune_ratio: Fraction of visual tokens the illustrated pruner drops.
        grid: Side of the illustrated token grid (``grid * grid`` tokens).
        seed: Seed for which tokens the illustration keeps.

    Returns:
        The matplotlib figure (not shown; the caller displays or saves it).
    """
    n_tokens = grid * grid
    n_kept = max(1, round((1 - prune_ratio) * n_tokens))
    rng = np.random.default_rng(seed)
    kept = np.zeros(n_tokens, dtype=bool)
    kept[rng.choice(n_tokens, size=n_kept, replace=False)] = True

    fig, ax = plt.subplots(figsize=(13, 3.6))
    ax.set_xlim(0, 13)
    ax.set_ylim(0, 3.6)
    ax.axis("off")
    width, height, gap, y0 = 1.75, 1.6, 0.4, 1.3
    centres = []
    for i, (title, detail, colour) in enumerate(_STAGES):
        x = 0.15 + i * (width + gap)
        ax.add_patch(
            FancyBboxPatch(
                (x, y0),
                width,
                height,
                boxstyle="round,pad=0.04,rounding_size=0.12",
                facecolor=colour,
                edgecolor="#525252",
            )
        )
        ax.text(x + width / 2, y0 + height - 0.25, title, ha="center", va="center",
                fontsize=10, weight="bold")
        ax.text(x + width / 2, y0 + height / 2 - 0.2, detail, ha="center", va="center",
                fontsize=7.5)
        centres.append((x, x + width))
        if i:
            ax.add_patch(
                FancyArrowPatch(
                    (centres[i - 1][1] + 0.02, y0 + height / 2),
                    (x - 0.02, y0 + height / 2),
                    arrowstyle="-|>",
                    mutation_scale=14,
                    color="#252525",
                )
            )
    cell = 0.11
    grid_x = centres[3][0] + (width - grid * cell) / 2
    _draw_token_grid(ax, grid_x, y0 - 0.3, kept.reshape(grid, grid), cell)
    ax.text(
        centres[3][0] + width / 2,
        0.05,
        f"{n_kept} of {n_tokens} tokens kept (ratio {prune_ratio:g})",
        ha="center",
        fontsize=8,
    )
    ax.text(centres[4][0] + width / 2, y0 + height + 0.35, "caption tokens so far (teacher "
            "forcing / generation)", ha="center", fontsize=7.5)
    ax.add_patch(
        FancyArrowPatch(
            (centres[4][0] + width / 2, y0 + height + 0.25),
            (centres[4][0] + width / 2, y0 + height + 0.03),
            arrowstyle="-|>",
            mutation_scale=12,
            color="#252525",
        )
    )
    fig.tight_layout()
    return fig
