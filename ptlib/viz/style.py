"""One figure style for the whole course: sizes that fit the page, one colour per name.

The book (sphinx-book-theme at 1280 px) shows a notebook's PNG at its natural
pixel size inside a content column about :data:`COLUMN_PX` pixels wide; a wider
picture is shrunk to fit, and its text with it. The style therefore draws at
:data:`DPI` = 96 (one CSS pixel per figure pixel at 96 px per inch, so a font
of N pt in matplotlib is N pt on the page) and never wider than
:data:`TEXT_WIDTH_IN` inches, which leaves room for the 0.1 inch padding that
Jupyter's ``bbox_inches="tight"`` adds on each side. Every text is at least
:data:`MIN_FONT_PT` points.

Colours carry meaning across chapters: a pruning method (:data:`METHOD_COLOURS`)
and a backbone (:data:`BACKBONE_COLOURS`) have one colour each, everywhere, so a
legend reads the same in chapter 7 as in chapter 9. Memory and encoder placement
of the same method share its colour and differ in line style
(:func:`method_style`).

Usage in a notebook::

    from ptlib.viz import style
    style.apply_style()                       # once, at the top
    fig, ax = style.subplots(width_fraction=0.6, height=2.8)
    ax.plot(x, y, color=style.method_colour("merge"), label="merge")
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure

COLUMN_PX = 688
"""Width in CSS pixels of the book's content column at a 1280 px window (measured in
headless Chromium on sphinx-book-theme 1.3)."""

DPI = 96
"""Figure pixels per inch; at 96, one figure pixel is one CSS pixel and N pt is N pt."""

TIGHT_PAD_IN = 0.1
"""Padding (inches) that Jupyter's ``bbox_inches="tight"`` adds around a figure."""

TEXT_WIDTH_IN = 6.8
"""The widest figure in inches (``6.8 * 96 + 2 * 0.1 * 96 = 672`` px, inside the column)."""

MIN_FONT_PT = 8.0
"""No text in a course figure is smaller than this, as displayed."""

FONT_SIZES: dict[str, float] = {
    "text": 9.0,  # default text, axis labels, titles of panels
    "small": 8.0,  # tick labels, legends, captions under images, numbers in cells
    "title": 10.0,  # figure titles
}
"""Font sizes in points (all >= :data:`MIN_FONT_PT`)."""

METHOD_COLOURS: dict[str, str] = {
    "none": "#000000",  # black: no pruning, the reference
    "random": "#999999",  # grey: the chance baseline
    "norm": "#0072B2",  # blue
    "cls_attention": "#E69F00",  # orange
    "learned": "#CC79A7",  # reddish purple
    "merge": "#009E73",  # bluish green
}
"""One colour per pruning method (Okabe-Ito, readable with colour-vision deficiency)."""

BACKBONE_COLOURS: dict[str, str] = {
    "vit": "#D55E00",  # vermillion
    "convnext": "#56B4E9",  # sky blue
    "convnext_s16": "#332288",  # indigo: the equal-token (stride 16) ConvNeXt
    "vit_pretrained": "#882255",  # wine
    "convnext_s16_pretrained": "#999933",  # olive: chapter 4b's pretrained ConvNeXt
}
"""One colour per backbone (disjoint from :data:`METHOD_COLOURS`)."""

PLACEMENT_LINESTYLES: dict[str, str] = {"memory": "-", "encoder": "--"}
"""Line style per pruning placement; the colour stays the method's."""

SERIES_COLOURS: tuple[str, ...] = ("#444444", "#AA3377", "#228833", "#CCBB44", "#66CCEE",
                                   "#4477AA", "#EE6677", "#BBBBBB")
"""Colours for other categories (training/validation, FLOP parts, ...), the default cycle."""

HEATMAP_CMAP = "viridis"
"""Perceptually uniform sequential map for every heatmap (attention, scores, counts)."""

PRUNED_RGBA = (1.0, 1.0, 1.0, 0.82)
"""Pruned token cells are washed out to white (neither a grey of the image nor a map colour)."""

_ALIASES: dict[str, str] = {
    "none": "none", "no_pruning": "none", "unpruned": "none",
    "cls": "cls_attention", "cls_attn": "cls_attention", "evit": "cls_attention",
    "tome": "merge", "merging": "merge", "dynamicvit": "learned",
    "convnext_stride_16": "convnext_s16", "convnext_stride16": "convnext_s16",
    "convnext_16": "convnext_s16", "convnext_stride_32": "convnext",
    "vit_tiny_patch16_224": "vit", "convnext_atto": "convnext",
}


def _normalise(name: str) -> str:
    """``"ConvNeXt (stride 16)"`` -> ``"convnext_stride_16"``; ``"CLS attention"`` -> ``"cls_attention"``."""
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


def _lookup(name: str, palette: Mapping[str, str], what: str) -> str:
    key = _normalise(name)
    key = _ALIASES.get(key, key)
    if key in palette:
        return palette[key]
    # a longer name built on a palette key: "vit_trained_learned" -> "vit",
    # "convnext_s16_s1" -> "convnext_s16", "coco_vit_b16" -> "vit" (longest key wins)
    inside = [k for k in palette if f"_{k}_" in f"_{key}_"]
    if inside:
        return palette[max(inside, key=len)]
    raise ValueError(f"no {what} colour for {name!r}; the palette has {sorted(palette)} "
                     f"(add new names to ptlib.viz.style.{what.upper()}_COLOURS)")


def method_colour(name: str) -> str:
    """The colour of a pruning method, e.g. ``method_colour("merge") == "#009E73"``.

    Args:
        name: A method of :data:`METHOD_COLOURS`, in any case or spelling
            (``"CLS attention"``, ``"cls_attention"``).

    Raises:
        ValueError: For a name the palette does not know.
    """
    return _lookup(name, METHOD_COLOURS, "method")


def backbone_colour(name: str) -> str:
    """The colour of a backbone, e.g. ``backbone_colour("vit") == "#D55E00"``.

    Names built on a backbone take its colour (``"vit_trained_learned"``,
    ``"convnext_s16_s1"``, the efficiency setups ``"shapes_vit"``, ``"coco_convnext_t"``),
    as do labels like ``"ConvNeXt (stride 16)"``.

    Raises:
        ValueError: For a name the palette does not know.
    """
    return _lookup(name, BACKBONE_COLOURS, "backbone")


def method_style(name: str, placement: str = "memory") -> dict[str, Any]:
    """Keyword arguments for ``ax.plot`` of one method: colour, line style, marker, label.

    Args:
        name: The pruning method.
        placement: ``"memory"`` (solid) or ``"encoder"`` (dashed, label gets ``", encoder"``).

    Raises:
        ValueError: For an unknown method or placement.
    """
    if placement not in PLACEMENT_LINESTYLES:
        raise ValueError(f"placement must be one of {tuple(PLACEMENT_LINESTYLES)}, "
                         f"got {placement!r}")
    label = name if placement == "memory" else f"{name}, encoder"
    return {"color": method_colour(name), "linestyle": PLACEMENT_LINESTYLES[placement],
            "marker": "o" if placement == "memory" else "s", "label": label}


def rc_params() -> dict[str, Any]:
    """The course's matplotlib settings (what :func:`apply_style` sets)."""
    return {
        "figure.dpi": DPI,
        "savefig.dpi": "figure",
        "figure.figsize": (TEXT_WIDTH_IN, 3.0),
        "figure.facecolor": "white",
        "savefig.facecolor": "white",
        "font.size": FONT_SIZES["text"],
        "axes.titlesize": FONT_SIZES["text"],
        "axes.labelsize": FONT_SIZES["text"],
        "xtick.labelsize": FONT_SIZES["small"],
        "ytick.labelsize": FONT_SIZES["small"],
        "legend.fontsize": FONT_SIZES["small"],
        "legend.title_fontsize": FONT_SIZES["small"],
        "figure.titlesize": FONT_SIZES["title"],
        "figure.labelsize": FONT_SIZES["text"],
        "axes.prop_cycle": mpl.cycler(color=list(SERIES_COLOURS)),
        "axes.grid": False,
        "grid.alpha": 0.3,
        "lines.linewidth": 1.5,
        "lines.markersize": 4.0,
        "image.cmap": HEATMAP_CMAP,
        "legend.frameon": True,
        "legend.framealpha": 0.85,
    }


def apply_style() -> None:
    """Set the course style for every later figure (call once at the top of a notebook)."""
    mpl.rcParams.update(rc_params())


@contextmanager
def style_context() -> Iterator[None]:
    """The course style inside a ``with`` block only (the figure helpers use this)."""
    with mpl.rc_context(rc_params()):
        yield


def figure_width(width_fraction: float = 1.0) -> float:
    """Inches for a figure spanning ``width_fraction`` of the column.

    Raises:
        ValueError: Unless ``0 < width_fraction <= 1``.
    """
    if not 0 < width_fraction <= 1:
        raise ValueError(f"width_fraction must be in (0, 1], got {width_fraction}")
    return TEXT_WIDTH_IN * width_fraction


def figure(width_fraction: float = 1.0, height: float | None = None, **kwargs: Any) -> Figure:
    """A new figure in the course style that fits the column.

    Args:
        width_fraction: Share of the column's width, in ``(0, 1]``.
        height: Inches (default: 0.45 of the width).
        **kwargs: Passed to ``matplotlib.pyplot.figure`` (``layout`` defaults
            to ``"constrained"``).
    """
    width = figure_width(width_fraction)
    kwargs.setdefault("layout", "constrained")
    with style_context():
        return plt.figure(figsize=(width, 0.45 * width if height is None else height),
                          dpi=DPI, **kwargs)


def subplots(
    nrows: int = 1,
    ncols: int = 1,
    *,
    width_fraction: float = 1.0,
    height: float | None = None,
    **kwargs: Any,
) -> tuple[Figure, Any]:
    """``matplotlib.pyplot.subplots`` in the course style, never wider than the column.

    Args:
        nrows: Rows of panels.
        ncols: Columns of panels.
        width_fraction: Share of the column's width, in ``(0, 1]``.
        height: Inches (default: 2.6 per row, or 0.45 of the width for one row).
        **kwargs: Passed on (``layout`` defaults to ``"constrained"``).

    Returns:
        ``(figure, axes)`` as ``matplotlib.pyplot.subplots`` returns them.
    """
    width = figure_width(width_fraction)
    if height is None:
        height = 0.45 * width if nrows == 1 else 2.6 * nrows
    kwargs.setdefault("layout", "constrained")
    with style_context():
        return plt.subplots(nrows, ncols, figsize=(width, height), dpi=DPI, **kwargs)


def colorbar(
    mappable: ScalarMappable,
    ax: Axes | list[Axes] | np.ndarray,
    label: str = "",
    **kwargs: Any,
) -> Colorbar:
    """A colour bar for a heatmap (or for a row of heatmaps sharing one scale).

    Args:
        mappable: The image (``ax.imshow(...)``) or a
            :class:`~matplotlib.cm.ScalarMappable` with the shared norm and map.
        ax: The panel(s) the bar belongs to; the bar takes its room from them.
        label: What the colours measure (e.g. ``"attention weight"``).
        **kwargs: Passed to ``Figure.colorbar``
            (default ``shrink=0.9``, ``fraction=0.05``, ``pad=0.02``).
    """
    given = np.ravel(np.asarray(ax, dtype=object)).tolist()
    fig = mappable.axes.figure if getattr(mappable, "axes", None) else given[0].figure
    axes = [a for a in given if a in fig.axes]  # removed (empty) panels are skipped
    kwargs.setdefault("shrink", 0.9)
    kwargs.setdefault("fraction", 0.05)
    kwargs.setdefault("pad", 0.02)
    bar = fig.colorbar(mappable, ax=axes if len(axes) > 1 else axes[0], **kwargs)
    bar.ax.tick_params(labelsize=FONT_SIZES["small"])
    if label:
        bar.set_label(label, fontsize=FONT_SIZES["small"])
    return bar


def wrap(text: str, width_in: float, fontsize: float = FONT_SIZES["small"],
         indent: str = "") -> str:
    """Wrap text to lines that fit ``width_in`` inches at ``fontsize`` points.

    The average character of the default sans-serif font is about 0.55 em wide.
    """
    chars = max(8, int(width_in * 72 / (0.55 * fontsize)))
    return textwrap.fill(text, chars, subsequent_indent=indent, break_long_words=True)


def series_colour(index: int) -> str:
    """The ``index``-th colour for categories that are neither methods nor backbones."""
    return SERIES_COLOURS[index % len(SERIES_COLOURS)]
