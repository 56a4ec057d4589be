"""Figures for the course: the pipeline diagram, token overlays, attention maps, curves.

Each figure lives in its own module; this package re-exports the public functions.
The chapter-8 demo (:mod:`ptlib.viz.demo`) is imported from its module.
"""

from ptlib.viz.attention import (
    attention_grid,
    draw_kept_tokens,
    draw_word_attention,
    upsample_grid,
)
from ptlib.viz.confusion import draw_confusion_matrix
from ptlib.viz.curves import draw_training_curves, format_epoch_log
from ptlib.viz.pipeline import draw_pipeline
from ptlib.viz.table import Table, glue, table

__all__ = [
    "Table",
    "attention_grid",
    "draw_confusion_matrix",
    "draw_kept_tokens",
    "draw_pipeline",
    "draw_training_curves",
    "draw_word_attention",
    "format_epoch_log",
    "glue",
    "table",
    "upsample_grid",
]
