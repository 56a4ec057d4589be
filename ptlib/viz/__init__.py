"""Figures for the course: the pipeline diagram, token overlays, attention maps, curves.

Each figure lives in its own module; this package re-exports the public functions.
"""

from ptlib.viz.pipeline import draw_pipeline

__all__ = ["draw_pipeline"]
