"""Figures for the course: the pipeline diagram, token overlays, attention maps, curves.

Every figure uses one style (:mod:`ptlib.viz.style`): it fits the book's column, its
text is at least 8 pt as displayed, and each pruning method and backbone has one colour.

Each figure lives in its own module; this package re-exports the public functions.
The chapter-8 demo (:mod:`ptlib.viz.demo`) is imported from its module.
"""

from ptlib.viz.attention import (
    attention_grid,
    draw_attention_maps,
    draw_attention_overlay,
    draw_kept_tokens,
    draw_token_scores,
    draw_word_attention,
    upsample_grid,
)
from ptlib.viz.confusion import draw_confusion_matrix
from ptlib.viz.curves import draw_training_curves, format_epoch_log
from ptlib.viz.images import image_grid
from ptlib.viz.pipeline import draw_pipeline
from ptlib.viz.style import (
    apply_style,
    backbone_colour,
    colorbar,
    method_colour,
    method_style,
    style_context,
    subplots,
)
from ptlib.viz.table import Table, glue, table

__all__ = [
    "Table",
    "apply_style",
    "backbone_colour",
    "colorbar",
    "attention_grid",
    "draw_attention_maps",
    "draw_attention_overlay",
    "draw_confusion_matrix",
    "draw_kept_tokens",
    "draw_pipeline",
    "draw_token_scores",
    "draw_training_curves",
    "draw_word_attention",
    "format_epoch_log",
    "glue",
    "image_grid",
    "method_colour",
    "method_style",
    "style_context",
    "subplots",
    "table",
    "upsample_grid",
]
