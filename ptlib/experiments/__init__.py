"""The course's experiments: trained once per profile by ``make results``, loaded by the book."""

from ptlib.experiments.captioners import (
    BACKBONES,
    TrainedRun,
    config_name,
    evaluate_checkpoint,
    slim_checkpoint,
    trained_captioner,
)

__all__ = [
    "BACKBONES",
    "TrainedRun",
    "config_name",
    "evaluate_checkpoint",
    "slim_checkpoint",
    "trained_captioner",
]
