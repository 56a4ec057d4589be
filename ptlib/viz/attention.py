"""Cross-attention maps: where the decoder looked for each generated word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from PIL import Image


def attention_grid(
    weights: torch.Tensor, kept_indices: torch.Tensor, grid: tuple[int, int]
) -> np.ndarray:
    """Scatter attention over kept tokens back onto the full token grid.

    Args:
        weights: ``(M,)`` attention over the memory tokens. With a fused token
            (``M = K + 1``) the last weight belongs to no grid cell and is dropped.
        kept_indices: ``(K,)`` original grid positions of the kept tokens.
        grid: ``(h, w)`` of the full grid.

    Returns:
        ``(h, w)`` array; pruned cells are ``NaN`` (drawn grey).
    """
    h, w = grid
    full = np.full(h * w, np.nan, dtype=np.float64)
    k = kept_indices.numel()
    full[kept_indices.cpu().numpy()] = weights[:k].float().cpu().numpy()
    return full.reshape(h, w)


def draw_word_attention(
    image: Image.Image,
    words: list[str],
    attention: torch.Tensor,
    kept_indices: torch.Tensor,
    grid: tuple[int, int],
    max_words: int = 8,
) -> Figure:
    """The image, the mean attention over the caption, and one panel per word.

    Args:
        image: The picture as the model saw it (already resized).
        words: The generated words (without ``<eos>``).
        attention: ``(L, M)`` cross-attention per generated token.
        kept_indices: ``(K,)`` grid positions of the memory tokens.
        grid: ``(h, w)`` token grid.
        max_words: Draw at most this many word panels.
    """
    n = min(len(words), max_words)
    fig, axes = plt.subplots(1, n + 2, figsize=(2.0 * (n + 2), 2.3))
    picture = np.asarray(image)
    extent = (0, picture.shape[1], picture.shape[0], 0)
    cmap = plt.get_cmap("inferno").with_extremes(bad=(0.62, 0.62, 0.62, 0.85))
    panels = [("image", None), ("mean", attention[: max(len(words), 1)].mean(dim=0))]
    panels += [(words[i], attention[i]) for i in range(n)]
    for ax, (title, weights) in zip(axes, panels, strict=True):
        ax.imshow(picture, extent=extent)
        if weights is not None:
            heat = attention_grid(weights, kept_indices, grid)
            ax.imshow(np.ma.masked_invalid(heat), cmap=cmap, alpha=0.6, extent=extent,
                      interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def save_caption_attention(image: Image.Image, caption: str, result, model, path: str | Path) -> Path:
    """Draw :func:`draw_word_attention` for the first caption of a generation result and save it.

    Args:
        image: The resized picture.
        caption: Its generated caption.
        result: A :class:`ptlib.models.GenerationResult` made with ``return_attention=True``.
        model: The captioner (for its token grid).
        path: Output image file.
    """
    words = caption.split()
    fig = draw_word_attention(
        image, words, result.attention[0], result.kept_indices[0], model.encoder.grid
    )
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
