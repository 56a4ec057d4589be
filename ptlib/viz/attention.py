"""Cross-attention maps: where the decoder looked for each generated word.

A map is one row of the decoder's cross-attention (last layer, mean over heads)
for one generated token: a weight per memory token. :func:`attention_grid`
scatters it back onto the encoder's token grid (pruned cells are ``NaN``),
:func:`upsample_grid` brings it to image resolution (``"nearest"``: one flat
square per token; ``"bilinear"``: smooth, interpolated between kept tokens
only), and :func:`draw_word_attention` overlays it on the image, pruned tokens
in grey, one panel per word beside the mean over the caption.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import patches
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from ptlib.metrics.correctness import SceneTruth
from ptlib.metrics.grounding import PointingTrial

UPSAMPLE_MODES: tuple[str, ...] = ("nearest", "bilinear")
"""How :func:`upsample_grid` brings a token grid to image resolution."""

PRUNED_GREY = (0.62, 0.62, 0.62, 0.85)
"""RGBA of pruned cells in every overlay."""


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
    full[kept_indices.cpu().numpy()] = weights[:k].detach().float().cpu().numpy()
    return full.reshape(h, w)


def upsample_grid(heat: np.ndarray, size: tuple[int, int], mode: str = "nearest") -> np.ndarray:
    """Bring a token grid to image resolution, keeping pruned cells ``NaN``.

    ``"bilinear"`` interpolates between kept tokens only (normalised
    interpolation: the interpolated values divided by the interpolated kept
    mask), so a pruned neighbour does not pull a map towards zero; every
    pixel whose nearest token was pruned stays ``NaN``.

    Args:
        heat: ``(h, w)`` map with ``NaN`` at pruned cells (:func:`attention_grid`).
        size: ``(height, width)`` in pixels.
        mode: One of :data:`UPSAMPLE_MODES`.

    Returns:
        ``(height, width)`` float array.

    Raises:
        ValueError: For an unknown ``mode`` or a map that is not 2-D.
    """
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    heat = np.asarray(heat, dtype=np.float64)
    if heat.ndim != 2:
        raise ValueError(f"heat must be an (h, w) map, got shape {heat.shape}")
    kept = torch.from_numpy(~np.isnan(heat)).double()[None, None]
    values = torch.from_numpy(np.nan_to_num(heat, nan=0.0))[None, None]
    nearest_kept = F.interpolate(kept, size=size, mode="nearest")[0, 0].numpy() > 0.5
    if mode == "nearest":
        out = F.interpolate(values, size=size, mode="nearest")[0, 0].numpy()
    else:
        weighted = F.interpolate(values * kept, size=size, mode="bilinear", align_corners=False)
        mass = F.interpolate(kept, size=size, mode="bilinear", align_corners=False)
        out = (weighted / mass.clamp_min(1e-12))[0, 0].numpy()
    return np.where(nearest_kept, out, np.nan)


def draw_attention_overlay(
    ax: Axes,
    image: Image.Image | np.ndarray,
    heat: np.ndarray | None,
    *,
    upsample: str = "nearest",
    alpha: float = 0.6,
) -> None:
    """Draw the image and, over it, an attention map with pruned cells grey.

    Args:
        ax: Where to draw.
        image: The picture as the model saw it.
        heat: ``(h, w)`` map with ``NaN`` at pruned cells, or ``None`` for the image alone.
        upsample: One of :data:`UPSAMPLE_MODES`.
        alpha: Opacity of the map.
    """
    picture = np.asarray(image)
    extent = (0, picture.shape[1], picture.shape[0], 0)
    ax.imshow(picture, extent=extent)
    if heat is not None:
        cmap = plt.get_cmap("inferno").with_extremes(bad=PRUNED_GREY)
        full = upsample_grid(heat, picture.shape[:2], upsample)
        ax.imshow(np.ma.masked_invalid(full), cmap=cmap, alpha=alpha, extent=extent,
                  interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_kept_tokens(
    ax: Axes, image: Image.Image | np.ndarray, kept_indices: torch.Tensor, grid: tuple[int, int]
) -> None:
    """The image with pruned token cells greyed out and the token grid drawn.

    Args:
        ax: Where to draw.
        image: The picture as the model saw it.
        kept_indices: ``(K,)`` grid positions of the kept tokens.
        grid: ``(h, w)`` of the full grid.
    """
    h, w = grid
    picture = np.asarray(image)
    height, width = picture.shape[:2]
    extent = (0, width, height, 0)
    ax.imshow(picture, extent=extent)
    pruned = np.ones(h * w, dtype=bool)
    pruned[kept_indices.reshape(-1).cpu().numpy()] = False
    mask = np.zeros((h, w, 4))
    mask[pruned.reshape(h, w)] = PRUNED_GREY
    ax.imshow(mask, extent=extent, interpolation="nearest")
    for row in range(1, h):
        ax.axhline(row * height / h, color="white", linewidth=0.4, alpha=0.6)
    for col in range(1, w):
        ax.axvline(col * width / w, color="white", linewidth=0.4, alpha=0.6)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_pointing_trial(
    ax: Axes, trial: PointingTrial, truth: SceneTruth, picture_size: tuple[int, int]
) -> None:
    """Mark a pointing-game trial: boxes of the named shape and the attention peak.

    Args:
        ax: A panel already showing the picture (pixel extent).
        trial: From :func:`ptlib.metrics.grounding.point_caption`.
        truth: The image's objects (boxes in the original image's pixels).
        picture_size: ``(width, height)`` of the drawn picture (boxes are scaled to it).
    """
    sx, sy = picture_size[0] / truth.width, picture_size[1] / truth.height
    for obj in truth.objects:
        if obj.shape == trial.shape:
            x0, y0, bw, bh = obj.bbox
            ax.add_patch(patches.Rectangle((x0 * sx, y0 * sy), bw * sx, bh * sy, fill=False,
                                           edgecolor="cyan", linewidth=1.2))
    colour = "lime" if trial.hit else "red"
    ax.plot(trial.point[0] * sx, trial.point[1] * sy, marker="x", markersize=9,
            markeredgewidth=2.2, color=colour)


def draw_word_attention(
    image: Image.Image,
    words: list[str],
    attention: torch.Tensor,
    kept_indices: torch.Tensor,
    grid: tuple[int, int],
    max_words: int = 8,
    *,
    upsample: str = "nearest",
    positions: Sequence[int] | None = None,
    show_kept: bool = False,
    trials: Sequence[PointingTrial] = (),
    truth: SceneTruth | None = None,
    panel_size: float = 2.0,
    title: str = "",
) -> Figure:
    """The image, the mean attention over the caption, and one panel per word.

    Args:
        image: The picture as the model saw it (already resized).
        words: The generated words (without ``<eos>``).
        attention: ``(L, M)`` cross-attention per generated token.
        kept_indices: ``(K,)`` grid positions of the memory tokens.
        grid: ``(h, w)`` token grid.
        max_words: Draw at most this many word panels.
        upsample: One of :data:`UPSAMPLE_MODES`.
        positions: Which words get a panel (default: the first ``max_words``).
        show_kept: Add a panel with the pruned tokens greyed out.
        trials: Pointing-game trials to mark on their word's panel (with ``truth``).
        truth: The image's objects, for ``trials``.
        panel_size: Inches per panel.
        title: A title above the panels (e.g. the backbone and the caption).

    Returns:
        The figure; panel titles are ``"image"``, ``"kept K/N"``, ``"mean"``, then the words.
    """
    chosen = list(range(len(words)))[:max_words] if positions is None else list(positions)[:max_words]
    if any(not 0 <= p < len(words) for p in chosen):
        raise ValueError(f"positions {chosen} must index the {len(words)} words")
    # (what to draw, title, attention row or None, word position or None)
    panels: list[tuple[str, str, torch.Tensor | None, int | None]] = [("image", "image", None, None)]
    if show_kept:
        panels.append(("kept", f"kept {kept_indices.numel()}/{grid[0] * grid[1]}", None, None))
    panels.append(("map", "mean", attention[: max(len(words), 1)].mean(dim=0), None))
    panels += [("map", words[i], attention[i], i) for i in chosen]
    height = panel_size + (0.55 if title else 0.3)
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size * len(panels), height),
                             squeeze=False, layout="constrained")
    by_position = {t.position: t for t in trials}
    picture = np.asarray(image)
    picture_size = (picture.shape[1], picture.shape[0])
    for ax, (kind, panel_title, weights, position) in zip(axes[0], panels, strict=True):
        if kind == "kept":
            draw_kept_tokens(ax, picture, kept_indices, grid)
        else:
            heat = None if weights is None else attention_grid(weights, kept_indices, grid)
            draw_attention_overlay(ax, picture, heat, upsample=upsample)
        if position in by_position and truth is not None:
            draw_pointing_trial(ax, by_position[position], truth, picture_size)
        ax.set_title(panel_title, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
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
