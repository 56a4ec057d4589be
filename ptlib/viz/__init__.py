"""Figures for the course: the pipeline diagram, token overlays, attention maps, curves.

Each figure lives in its own module; this package re-exports the public functions.
"""

from ptlib.viz.confusion import draw_confusion_matrix
from ptlib.viz.curves import draw_training_curves, format_epoch_log
from ptlib.viz.pipeline import draw_pipeline

__all__ = ["draw_confusion_matrix", "draw_pipeline", "draw_training_curves", "format_epoch_log"]
