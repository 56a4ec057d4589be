"""The course's figure style: every helper's figure is legible at the size the book shows it.

Each figure helper of ``ptlib.viz`` is drawn from small synthetic inputs and
rendered the way Jupyter and the book render it (PNG at the figure's dpi,
``bbox_inches="tight"``). The book shows that PNG at its natural size, shrunk
only if wider than the content column. The tests check, per figure: the PNG
fits the column; every text actually drawn is at least 8 pt at the displayed
size; every heatmap has a colour bar; lines named after a pruning method or a
backbone have the palette's colour; a panel with several named lines has a
legend naming them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from unittest import mock

import matplotlib as mpl
import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.text import Text
from PIL import Image

from ptlib.experiments.pruning_study import StudyResult
from ptlib.metrics.correctness import SceneTruth, TrueObject
from ptlib.metrics.grounding import point_caption
from ptlib.viz import (
    attention_grid,
    draw_attention_maps,
    draw_confusion_matrix,
    draw_pipeline,
    draw_token_scores,
    draw_training_curves,
    draw_word_attention,
    image_grid,
    style,
)
from ptlib.viz.study import plot_study_curves

# ------------------------------------------------------------------ measuring a figure


def rendered(fig: Figure) -> tuple[int, list[Text]]:
    """Render like Jupyter's inline backend; return the PNG width and the texts drawn."""
    drawn: list[Text] = []
    original = Text.draw

    def recording_draw(self, renderer):
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return original(self, renderer)

    buffer = io.BytesIO()
    with mock.patch.object(Text, "draw", recording_draw):
        fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight")
    buffer.seek(0)
    return Image.open(buffer).size[0], drawn


def displayed_points(fig: Figure) -> tuple[int, dict[str, float]]:
    """PNG width in px, and each drawn text's size in points as the book displays it."""
    width, texts = rendered(fig)
    shrink = min(1.0, style.COLUMN_PX / width)
    sizes = {}
    for text in texts:
        shown = text.get_fontsize() * fig.dpi / 96 * shrink  # 96 CSS px per inch
        key = text.get_text()
        sizes[key] = min(shown, sizes.get(key, shown))
    return width, sizes


def colour_bars(fig: Figure) -> list:
    return [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def heatmaps(fig: Figure) -> list[AxesImage]:
    """Images of scalar data mapped through a colour map (not RGB pictures or masks)."""
    bar_axes = {bar.ax for bar in colour_bars(fig)}
    return [image for ax in fig.axes if ax not in bar_axes for image in ax.images
            if image.get_array() is not None and np.ndim(image.get_array()) == 2]


def assert_legible(fig: Figure) -> None:
    width, sizes = displayed_points(fig)
    assert width <= style.COLUMN_PX, f"figure is {width} px wide, the column {style.COLUMN_PX}"
    small = {text: round(size, 2) for text, size in sizes.items() if size < style.MIN_FONT_PT}
    assert not small, f"texts under {style.MIN_FONT_PT} pt as displayed: {small}"
    assert sizes, "the figure draws no text at all"


def assert_heatmaps_have_colour_bars(fig: Figure) -> None:
    bars = colour_bars(fig)
    for image in heatmaps(fig):
        assert any(bar.cmap.name == image.get_cmap().name
                   and (bar.norm.vmin, bar.norm.vmax) == (image.norm.vmin, image.norm.vmax)
                   for bar in bars), f"heatmap in {image.axes.get_title()!r} has no colour bar"


def assert_palette_and_legends(fig: Figure) -> None:
    for ax in fig.axes:
        named = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        for line in named:
            label = line.get_label().split(",")[0]
            for palette, lookup in ((style.METHOD_COLOURS, style.method_colour),
                                    (style.BACKBONE_COLOURS, style.backbone_colour)):
                if label in palette:
                    assert to_hex(line.get_color()) == to_hex(lookup(label)), label
        if len(named) > 1:
            legend = ax.get_legend()
            assert legend is not None, f"panel {ax.get_title()!r} draws {len(named)} lines " \
                                       "but has no legend"
            assert {t.get_text() for t in legend.get_texts()} == {
                line.get_label() for line in named}


@pytest.fixture(autouse=True)
def _closed_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------- synthetic inputs

SCENE = SceneTruth(1, 64, 64, (
    TrueObject("circle", "orange", "large", (34.0, 4.0, 24.0, 24.0), (46.0, 16.0)),
    TrueObject("square", "orange", "large", (4.0, 30.0, 24.0, 24.0), (16.0, 42.0)),
))
WORDS = "there is a large orange circle and three large orange squares".split()
HISTORY = [{"epoch": e, "step": 10 * e, "train_loss": 3.0 / e, "train_token_acc": 0.3 * e,
            "val_loss": 3.2 / e, "val_token_acc": 0.25 * e} for e in (1, 2, 3)]


def _picture() -> Image.Image:
    pixels = np.full((64, 64, 3), 120, dtype=np.uint8)
    pixels[4:28, 34:58] = (240, 130, 20)  # orange shapes, as in chapter 8's example
    pixels[30:54, 4:28] = (240, 130, 20)
    return Image.fromarray(pixels)


def _attention() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    kept = torch.arange(0, 16, 2)[:6]  # 6 of 16 tokens on a 4x4 grid
    return torch.softmax(3 * torch.randn(len(WORDS), 6), dim=-1), kept


def _study() -> StudyResult:
    rows = []

    def row(model, seed, method, ratio, cider, placement="memory"):
        return {"model": model, "backbone": model, "seed": seed, "trained_with": "none",
                "method": method, "placement": placement, "ratio": ratio, "split": "test",
                "cider": cider, "tokens_kept": 10}

    for seed in (0, 1):
        for model, methods in (("vit", ("random", "norm", "cls_attention", "merge")),
                               ("convnext", ("random", "norm", "merge")),
                               ("convnext_s16", ("random", "norm", "merge"))):
            rows.append(row(model, seed, "none", 0.0, 4.0 + seed / 10))
            rows += [row(model, seed, m, r, 4.0 - (i + 1) * r + seed / 10)
                     for i, m in enumerate(methods) for r in (0.3, 0.7)]
        rows += [row("vit", seed, "cls_attention", r, 3.0 - r, "encoder") for r in (0.3, 0.7)]
    models = {m: {"backbone": m, "tokens": t, "trained_with": "none", "runs": {0: {}, 1: {}}}
              for m, t in (("vit", 36), ("convnext", 144), ("convnext_s16", 36))}
    return StudyResult(rows=rows, models=models)


def _word_attention() -> Figure:
    attention, kept = _attention()
    trials = point_caption(1, WORDS, attention, kept, (4, 4), SCENE)
    return draw_word_attention(_picture(), WORDS, attention, kept, (4, 4), max_words=5,
                               upsample="bilinear", positions=[3, 4, 5, 9, 10], show_kept=True,
                               trials=trials, truth=SCENE,
                               title="vit, ratio 0.3 (cls_attention): " + " ".join(WORDS))


def _attention_maps() -> Figure:
    attention, kept = _attention()
    maps = [attention_grid(attention[i], kept, (4, 4)) for i in range(4)]
    return draw_attention_maps(_picture(), maps, [f"head {i}" for i in range(4)],
                               title="vit, word 'circle'")


def _token_scores() -> Figure:
    fig, axes = style.subplots(1, 2, width_fraction=0.7, height=2.0)
    scores = torch.arange(16.0)
    for ax, kept in zip(axes, (torch.tensor([15, 14, 13]), torch.tensor([0, 5, 9])),
                        strict=True):
        draw_token_scores(ax, _picture(), scores, (4, 4), kept, label="token norm")
        ax.set_title("norm")
    return fig


def _image_grid() -> Figure:
    lines = ["vit greedy: a large orange circle above three large orange squares",
             "convnext beam 3: a large orange circle and three large orange squares",
             "reference: three large orange squares below a large orange circle"]
    return image_grid([_picture()] * 3, [lines, lines[:1], "a caption"],
                      titles=["test image 1", "test image 2", "test image 3"], ncols=2)


FIGURES: dict[str, Callable[[], Figure]] = {
    "pipeline": draw_pipeline,
    "image_grid": _image_grid,
    "word_attention": _word_attention,
    "attention_maps": _attention_maps,
    "token_scores": _token_scores,
    "confusion": lambda: draw_confusion_matrix(
        ["circle", "square", "triangle", "diamond", "star"], np.arange(25).reshape(5, 5),
        title="vit: shape (300 matched phrases)"),
    "training_curves": lambda: draw_training_curves(HISTORY, "vit: shapes_vit (profile ci)",
                                                    backbone="vit"),
    "study_memory": lambda: plot_study_curves(_study(), "cider"),
    "study_encoder": lambda: plot_study_curves(_study(), "cider", models=["vit"],
                                               placement="encoder"),
}


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_figure_fits_the_column_with_legible_text(name):
    fig = FIGURES[name]()
    assert fig.dpi == style.DPI
    assert_legible(fig)
    assert_heatmaps_have_colour_bars(fig)
    assert_palette_and_legends(fig)


@pytest.mark.parametrize("name", ["word_attention", "attention_maps", "token_scores",
                                  "confusion"])
def test_heatmap_figures_draw_heatmaps_with_colour_bars(name):
    fig = FIGURES[name]()
    assert heatmaps(fig) and colour_bars(fig)
    assert all(image.get_cmap().name == style.HEATMAP_CMAP for image in heatmaps(fig))


def test_attention_panels_share_one_scale_over_a_grey_picture():
    fig = _word_attention()
    maps = heatmaps(fig)
    assert len(maps) == 6  # the mean and five words
    assert len({(image.norm.vmin, image.norm.vmax) for image in maps}) == 1
    assert len(colour_bars(fig)) == 1
    under = maps[0].axes.images[0].get_array()  # the picture under the map: grey, not orange
    assert under.ndim == 3 and np.allclose(under[..., 0], under[..., 2])
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len({ax.get_window_extent().width.__round__() for ax in panels}) == 1
    marks = {ax.get_title(): ax.get_xlabel() for ax in panels if ax.get_xlabel()}
    assert set(marks) == {"circle", "squares"}  # the shape words carry their pointing result
    assert set(marks.values()) <= {"hit", "miss"}


def test_study_colours_agree_across_panels_and_every_panel_has_its_legend():
    fig = plot_study_curves(_study(), "cider")
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert len(panels) == 3
    colours: dict[str, set[str]] = {}
    for ax in panels:
        for line in ax.get_lines():
            colours.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
        assert ax.get_legend() is not None
    assert set(colours) == {"random", "norm", "cls_attention", "merge"}
    assert all(len(c) == 1 for c in colours.values())
    assert colours["merge"] == {to_hex(style.METHOD_COLOURS["merge"])}
    vit = panels[0]
    assert {t.get_text() for t in vit.get_legend().get_texts()} == {
        "random", "norm", "cls_attention", "merge"}


def test_the_checks_catch_a_figure_the_page_would_shrink():
    with style.style_context():
        fig, ax = plt.subplots(figsize=(13, 3))  # chapter 1's old grid was 13 in wide
    ax.plot([0, 1], [0, 1], label="norm", color="red")
    ax.plot([0, 1], [1, 0], label="merge", color=style.method_colour("merge"))
    width, sizes = displayed_points(fig)
    assert width > style.COLUMN_PX and min(sizes.values()) < style.MIN_FONT_PT
    with pytest.raises(AssertionError, match="norm"):
        assert_palette_and_legends(fig)
    fig, ax = style.subplots()
    ax.imshow(np.eye(3), cmap=style.HEATMAP_CMAP)
    with pytest.raises(AssertionError, match="colour bar"):
        assert_heatmaps_have_colour_bars(fig)


def test_palette_names_each_method_and_backbone_once():
    colours = [*style.METHOD_COLOURS.values(), *style.BACKBONE_COLOURS.values()]
    assert len(set(colours)) == len(colours)
    from ptlib.models.pruning import PRUNE_METHODS

    assert set(style.METHOD_COLOURS) == set(PRUNE_METHODS)
    assert style.method_colour("CLS attention") == style.METHOD_COLOURS["cls_attention"]
    assert style.backbone_colour("vit_trained_learned") == style.BACKBONE_COLOURS["vit"]
    assert style.backbone_colour("convnext_s16_s1") == style.BACKBONE_COLOURS["convnext_s16"]
    # chapter 4b's pretrained captioners have their own colours, as a pair
    assert style.backbone_colour("convnext_s16_pretrained_s2") == "#999933"
    assert style.backbone_colour("vit_pretrained") != style.backbone_colour("vit")
    assert style.backbone_colour("ConvNeXt (stride 16)") == style.BACKBONE_COLOURS["convnext_s16"]
    assert style.backbone_colour("coco_vit_b16") == style.BACKBONE_COLOURS["vit"]
    assert style.backbone_colour("shapes_convnext") == style.BACKBONE_COLOURS["convnext"]
    with pytest.raises(ValueError, match="no backbone colour for 'resnet50'"):
        style.backbone_colour("resnet50")
    assert style.method_style("norm", "encoder")["linestyle"] == "--"
    with pytest.raises(ValueError, match="no method colour for 'tome2'"):
        style.method_colour("tome2")
    with pytest.raises(ValueError, match="placement"):
        style.method_style("norm", "decoder")


def test_style_sizes_are_at_least_eight_points_and_the_widest_figure_fits():
    params = style.rc_params()
    for key in ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize",
                "ytick.labelsize", "legend.fontsize", "figure.titlesize"):
        assert params[key] >= style.MIN_FONT_PT, key
    assert (style.TEXT_WIDTH_IN + 2 * style.TIGHT_PAD_IN) * style.DPI <= style.COLUMN_PX
    with style.style_context():
        assert mpl.rcParams["figure.dpi"] == style.DPI
    with pytest.raises(ValueError, match="width_fraction"):
        style.subplots(width_fraction=1.2)
