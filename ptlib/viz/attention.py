"""Cross-attention maps: where the decoder looked for each generated word.

A map is one row of the decoder's cross-attention (last layer, mean over heads)
for one generated token: a weight per memory token. :func:`attention_grid`
scatters it back onto the encoder's token grid (pruned cells are ``NaN``),
:func:`upsample_grid` brings it to image resolution (``"nearest"``: one flat
square per token; ``"bilinear"``: smooth, interpolated between kept tokens
only), and :func:`draw_word_attention` overlays it on the image, pruned tokens
washed out, one panel per word beside the mean over the caption. The image is
drawn in grey under a perceptually uniform colour map, so the attention is the
only colour in a panel; the maps of one figure share one scale and one colour bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import patches, patheffects
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from PIL import Image

from ptlib.metrics.correctness import SceneTruth
from ptlib.metrics.grounding import PointingTrial
from ptlib.viz import style

UPSAMPLE_MODES: tuple[str, ...] = ("nearest", "bilinear")
"""How :func:`upsample_grid` brings a token grid to image resolution."""

PRUNED_GREY = style.PRUNED_RGBA
"""RGBA of pruned cells in every overlay (kept for old imports; see :data:`ptlib.viz.style.PRUNED_RGBA`)."""


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


def greyscale(image: Image.Image | np.ndarray) -> np.ndarray:
    """The picture as an ``(H, W, 3)`` grey RGB array in ``[0, 1]``, lifted towards white.

    Under a colour map the attention is the only colour in the panel, whatever the
    colours of the objects (chapter 8's orange shapes under an orange map could not
    be told apart from the attention). The luminance is mapped to ``[0.25, 1]``
    so the darkest parts of the image do not look like a weak map colour.
    """
    picture = np.asarray(image)
    if picture.ndim == 2:
        picture = picture[..., None]
    values = picture[..., :3].astype(np.float64)
    if values.max() > 1.0:
        values = values / 255.0
    if values.shape[-1] == 1:
        luminance = values[..., 0]
    else:
        luminance = values @ np.array([0.299, 0.587, 0.114])
    grey = 0.25 + 0.75 * luminance
    return np.repeat(grey[..., None], 3, axis=-1)


def draw_attention_overlay(
    ax: Axes,
    image: Image.Image | np.ndarray,
    heat: np.ndarray | None,
    *,
    upsample: str = "nearest",
    alpha: float = 0.85,
    vmin: float | None = None,
    vmax: float | None = None,
    grey: bool = True,
    cmap: str = style.HEATMAP_CMAP,
) -> AxesImage | None:
    """Draw the image in grey and, over it, an attention map with pruned cells washed out.

    Draw a colour bar for the returned image with :func:`ptlib.viz.style.colorbar`
    (figures like :func:`draw_word_attention` draw one per figure, on a shared scale).

    Args:
        ax: Where to draw.
        image: The picture as the model saw it.
        heat: ``(h, w)`` map with ``NaN`` at pruned cells, or ``None`` for the image alone.
        upsample: One of :data:`UPSAMPLE_MODES`.
        alpha: Opacity of the map where it peaks; weaker attention is drawn more
            transparent (down to 35% of ``alpha``) so the image shows through.
        vmin: Lower end of the colour scale (default: the map's minimum).
        vmax: Upper end (default: the map's maximum); pass the same limits to
            every panel of a row so the panels share one scale.
        grey: Draw the image in greyscale (:func:`greyscale`) so only the
            attention has colour; ``False`` keeps the image's colours (or use it
            for the image alone).
        cmap: A perceptually uniform sequential colour map.

    Returns:
        The map's image (a mappable for a colour bar), or ``None`` without a map.
    """
    picture = np.asarray(image)
    extent = (0, picture.shape[1], picture.shape[0], 0)
    ax.imshow(greyscale(picture) if grey and heat is not None else picture, extent=extent)
    mapped = None
    if heat is not None:
        colours = plt.get_cmap(cmap).with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
        full = upsample_grid(heat, picture.shape[:2], upsample)
        low = np.nanmin(full) if vmin is None else vmin
        high = np.nanmax(full) if vmax is None else vmax
        share = np.clip((np.nan_to_num(full, nan=low) - low) / max(high - low, 1e-12), 0, 1)
        mapped = ax.imshow(np.ma.masked_invalid(full), cmap=colours, extent=extent,
                           alpha=alpha * (0.35 + 0.65 * share), interpolation="nearest",
                           vmin=vmin, vmax=vmax)
        pruned = np.isnan(np.asarray(heat, dtype=np.float64))
        if pruned.any():
            mask = np.zeros((*pruned.shape, 4))
            mask[pruned] = style.PRUNED_RGBA
            ax.imshow(mask, extent=extent, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return mapped


def draw_kept_tokens(
    ax: Axes, image: Image.Image | np.ndarray, kept_indices: torch.Tensor, grid: tuple[int, int]
) -> None:
    """The image with pruned token cells washed out and the token grid drawn.

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
    mask[pruned.reshape(h, w)] = style.PRUNED_RGBA
    ax.imshow(mask, extent=extent, interpolation="nearest")
    for row in range(1, h):
        ax.axhline(row * height / h, color="black", linewidth=0.4, alpha=0.5)
    for col in range(1, w):
        ax.axvline(col * width / w, color="black", linewidth=0.4, alpha=0.5)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_token_scores(
    ax: Axes,
    image: Image.Image | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    grid: tuple[int, int],
    kept_indices: torch.Tensor | np.ndarray | None = None,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    label: str = "score",
    colour_bar: bool = True,
) -> AxesImage:
    """A pruning scorer's score per token over the grey image; kept cells outlined.

    Args:
        ax: Where to draw.
        image: The picture as the model saw it.
        scores: ``(N,)`` or ``(h, w)`` score per token (e.g. the token norm).
        grid: ``(h, w)`` of the token grid.
        kept_indices: ``(K,)`` grid positions the pruner kept (outlined in white).
        vmin: Lower end of the colour scale (share it across a row).
        vmax: Upper end of the colour scale.
        label: What the colour bar measures.
        colour_bar: Draw a colour bar beside the panel (``False`` when the caller
            draws one for a whole row).

    Returns:
        The map's image (a mappable for a shared colour bar).
    """
    h, w = grid
    values = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores,
                        dtype=np.float64)
    if values.size != h * w:
        raise ValueError(f"scores has {values.size} values for a {h}x{w} grid")
    mapped = draw_attention_overlay(ax, image, values.reshape(h, w), vmin=vmin, vmax=vmax)
    assert mapped is not None
    if kept_indices is not None:
        picture = np.asarray(image)
        cell_h, cell_w = picture.shape[0] / h, picture.shape[1] / w
        kept = np.asarray(kept_indices.cpu() if isinstance(kept_indices, torch.Tensor)
                          else kept_indices).reshape(-1)
        for index in kept:
            row, col = divmod(int(index), w)
            ax.add_patch(patches.Rectangle((col * cell_w, row * cell_h), cell_w, cell_h,
                                           fill=False, edgecolor="white", linewidth=1.0))
    if colour_bar:
        style.colorbar(mapped, ax, label)
    return mapped


_OUTLINE = [patheffects.withStroke(linewidth=3.2, foreground="black")]


def draw_pointing_trial(
    ax: Axes,
    trial: PointingTrial,
    truth: SceneTruth,
    picture_size: tuple[int, int],
    *,
    all_objects: bool = True,
) -> None:
    """Mark a pointing-game trial: boxes of the named shape and the attention peak.

    Objects of the named shape get a solid white box, the image's other objects
    (``all_objects``) a dotted one; the attention peak is a white ring on a hit
    and a white cross on a miss (outlined in black, readable on any map colour).

    Args:
        ax: A panel already showing the picture (pixel extent).
        trial: From :func:`ptlib.metrics.grounding.point_caption`.
        truth: The image's objects (boxes in the original image's pixels).
        picture_size: ``(width, height)`` of the drawn picture (boxes are scaled to it).
        all_objects: Also outline the objects of other shapes.
    """
    sx, sy = picture_size[0] / truth.width, picture_size[1] / truth.height
    for obj in truth.objects:
        named = obj.shape == trial.shape
        if named or all_objects:
            x0, y0, bw, bh = obj.bbox
            box = patches.Rectangle((x0 * sx, y0 * sy), bw * sx, bh * sy, fill=False,
                                    edgecolor="white", linewidth=1.4 if named else 0.8,
                                    linestyle="-" if named else ":")
            box.set_path_effects([patheffects.withStroke(linewidth=2.4 if named else 1.6,
                                                         foreground="black")])
            ax.add_patch(box)
    marker = "o" if trial.hit else "x"
    ax.plot(trial.point[0] * sx, trial.point[1] * sy, marker=marker, markersize=11,
            markeredgewidth=2.0, markerfacecolor="none", color="white",
            path_effects=_OUTLINE)


def _word_layout(n_panels: int, ncols: int, panel_size: float) -> tuple[int, int, float]:
    """Columns, rows and the inches per panel of a row of image panels plus a colour bar."""
    nrows = -(-n_panels // max(1, ncols))
    ncols = -(-n_panels // nrows)  # balance the rows: 8 panels at most 5 a row -> 4 + 4
    panel = min(panel_size, (style.TEXT_WIDTH_IN - 0.75) / ncols)
    return ncols, nrows, panel


def draw_attention_maps(
    image: Image.Image | np.ndarray,
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    *,
    upsample: str = "nearest",
    ncols: int = 5,
    panel_size: float = 1.6,
    title: str = "",
    show_image: bool = True,
    label: str = "attention weight",
) -> Figure:
    """Several attention maps of one image on one colour scale, with one colour bar.

    For example the heads of the last decoder layer and their mean:
    ``draw_attention_maps(picture, [attention_grid(w, kept, grid) for w in heads] +
    [mean], [f"head {h}" for h in range(n)] + ["mean of heads"])``.

    Args:
        image: The picture as the model saw it.
        maps: ``(h, w)`` maps with ``NaN`` at pruned cells (:func:`attention_grid`).
        titles: One title per map.
        upsample: One of :data:`UPSAMPLE_MODES`.
        ncols: Panels per row (the figure wraps onto more rows).
        panel_size: Largest inches per panel (the figure never exceeds the column).
        title: Wrapped above the panels.
        show_image: Start with a panel of the image in its own colours.
        label: What the colour bar measures.

    Returns:
        The figure; the colour limits are ``0`` to the largest value of any map.

    Raises:
        ValueError: If ``maps`` and ``titles`` differ in length or are empty.
    """
    if len(maps) != len(titles) or not maps:
        raise ValueError(f"maps and titles must be non-empty and equal in length, got "
                         f"{len(maps)} maps and {len(titles)} titles")
    panels: list[tuple[str, str, np.ndarray | None, int | None]] = []
    if show_image:
        panels.append(("image", "image", None, None))
    panels += [("map", t, np.asarray(m, dtype=np.float64), None)
               for m, t in zip(maps, titles, strict=True)]
    return _overlay_figure(np.asarray(image), panels, upsample=upsample, ncols=ncols,
                           panel_size=panel_size, title=title, label=label)


def _overlay_figure(
    picture: np.ndarray,
    panels: list[tuple[str, str, np.ndarray | None, int | None]],
    *,
    upsample: str,
    ncols: int,
    panel_size: float,
    title: str,
    label: str,
    kept: tuple[torch.Tensor, tuple[int, int]] | None = None,
    trials: Sequence[PointingTrial] = (),
    truth: SceneTruth | None = None,
) -> Figure:
    """Draw image/kept/map panels in rows, maps on one shared scale, one colour bar."""
    ncols, nrows, panel = _word_layout(len(panels), ncols, panel_size)
    finite = [m[np.isfinite(m)] for _, _, m, _ in panels if m is not None]
    finite = [v for v in finite if v.size]
    vmax = max((float(v.max()) for v in finite), default=1.0) or 1.0
    wrapped = style.wrap(title, ncols * panel + 0.5, style.FONT_SIZES["text"]) if title else ""
    by_position = {t.position: t for t in trials}
    marked = truth is not None and any(p in by_position for *_, p in panels)
    row_height = panel + 0.25 + (0.15 if marked else 0.0)
    height = nrows * row_height + (0.2 + 0.17 * (wrapped.count("\n") + 1) if wrapped else 0.1)
    height += 0.35 if marked else 0.0
    width = min(style.TEXT_WIDTH_IN, ncols * panel + 0.75)
    fig, axes = style.subplots(nrows, ncols, width_fraction=width / style.TEXT_WIDTH_IN,
                               height=height, squeeze=False)
    picture_size = (picture.shape[1], picture.shape[0])
    mappable = None
    for index, ax in enumerate(axes.flat):
        if index >= len(panels):
            ax.remove()
            continue
        kind, panel_title, heat, position = panels[index]
        if kind == "kept" and kept is not None:
            draw_kept_tokens(ax, picture, kept[0], kept[1])
        else:
            drawn = draw_attention_overlay(ax, picture, heat, upsample=upsample, vmin=0.0,
                                           vmax=vmax)
            mappable = mappable or drawn
        if position in by_position and truth is not None:
            trial = by_position[position]
            draw_pointing_trial(ax, trial, truth, picture_size)
            ax.set_xlabel("hit" if trial.hit else "miss" if trial.scored else "not in image",
                          fontsize=style.FONT_SIZES["small"])
        ax.set_title(panel_title, fontsize=style.FONT_SIZES["text"])
    if mappable is not None:
        style.colorbar(mappable, axes, label, shrink=min(0.9, 0.6 + 0.15 * nrows))
    if wrapped:
        fig.suptitle(wrapped, fontsize=style.FONT_SIZES["text"])
    if marked:
        fig.supxlabel("white boxes: objects of the named shape (dotted: other objects); "
                      "o: attention peak on it (hit), x: elsewhere (miss)",
                      fontsize=style.FONT_SIZES["small"])
    return fig


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
    panel_size: float = 1.6,
    title: str = "",
    ncols: int = 5,
) -> Figure:
    """The image, the mean attention over the caption, and one panel per word.

    The image is drawn in grey under the maps so that only the attention has
    colour; every map shares one colour scale (``0`` to the largest weight
    shown) and one colour bar; pruned cells are washed out to white.

    Args:
        image: The picture as the model saw it (already resized).
        words: The generated words (without ``<eos>``).
        attention: ``(L, M)`` cross-attention per generated token.
        kept_indices: ``(K,)`` grid positions of the memory tokens.
        grid: ``(h, w)`` token grid.
        max_words: Draw at most this many word panels.
        upsample: One of :data:`UPSAMPLE_MODES`.
        positions: Which words get a panel (default: the first ``max_words``).
        show_kept: Add a panel with the pruned tokens washed out.
        trials: Pointing-game trials to mark on their word's panel (with ``truth``).
        truth: The image's objects, for ``trials``.
        panel_size: Largest inches per panel (the figure never exceeds the column).
        title: A title above the panels (e.g. the backbone and the caption), wrapped.
        ncols: Panels per row; more panels wrap onto further rows.

    Returns:
        The figure; panel titles are ``"image"``, ``"kept K/N"``, ``"mean"``, then the words.
    """
    chosen = list(range(len(words)))[:max_words] if positions is None else list(positions)[:max_words]
    if any(not 0 <= p < len(words) for p in chosen):
        raise ValueError(f"positions {chosen} must index the {len(words)} words")
    # (what to draw, title, map or None, word position or None)
    panels: list[tuple[str, str, np.ndarray | None, int | None]] = [("image", "image", None, None)]
    if show_kept:
        panels.append(("kept", f"kept {kept_indices.numel()}/{grid[0] * grid[1]}", None, None))
    mean = attention[: max(len(words), 1)].mean(dim=0)
    panels.append(("map", "mean", attention_grid(mean, kept_indices, grid), None))
    panels += [("map", words[i], attention_grid(attention[i], kept_indices, grid), i)
               for i in chosen]
    return _overlay_figure(np.asarray(image), panels, upsample=upsample, ncols=ncols,
                           panel_size=panel_size, title=title, label="attention weight",
                           kept=(kept_indices, grid), trials=trials, truth=truth)


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
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
