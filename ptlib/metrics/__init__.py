"""Caption metrics: token accuracy, COCO generation metrics, floor and ceiling, results files.

* :mod:`~ptlib.metrics.accuracy`: teacher-forced token accuracy (top-1, top-5).
* :mod:`~ptlib.metrics.captions`: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D (SPICE
  when it can run offline) with pycocoevalcap's scorers.
* :mod:`~ptlib.metrics.references`: the floor (most frequent training caption)
  and the ceiling (reference agreement), scored on the same folds as a model.
* :mod:`~ptlib.metrics.results`: COCO results JSON plus a metrics JSON.
* :mod:`~ptlib.metrics.tokenization`: PTB tokenisation, or the Python rule without Java.
* :mod:`~ptlib.metrics.correctness`: what a shapes caption names against the image's
  objects (exact object set, per-attribute accuracy, hallucination, repetition, relations).
* :mod:`~ptlib.metrics.confusion`: shape and colour confusion matrices over matched objects.
* :mod:`~ptlib.metrics.grounding`: the pointing game (does the attention peak of a
  generated shape word fall on an object of that shape?) beside its chance rate.
"""

from ptlib.metrics.accuracy import TokenAccuracy, token_accuracy, token_accuracy_counts
from ptlib.metrics.captions import (
    DEFAULT_METRICS,
    METRIC_KEYS,
    CaptionScorer,
    score_captions,
    spice_unavailable_reason,
)
from ptlib.metrics.confusion import colour_confusion_matrix, shape_confusion_matrix
from ptlib.metrics.correctness import (
    CaptionJudgement,
    ParsedCaption,
    SceneTruth,
    TrueObject,
    judge_caption,
    judge_captions,
    load_ground_truth,
    match_groups,
    parse_model_caption,
    relation_groups,
    relation_verdict_kind,
    score_correctness,
)
from ptlib.metrics.grounding import (
    PointingGame,
    PointingTrial,
    generated_words,
    point_caption,
    pointing_game,
)
from ptlib.metrics.references import (
    best_constant_caption,
    most_frequent_caption_baseline,
    reference_agreement,
    score_against_folds,
    score_floor,
)
from ptlib.metrics.results import metrics_path_for, read_metrics, read_results, write_results
from ptlib.metrics.tokenization import java_available, python_tokenize

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_KEYS",
    "CaptionJudgement",
    "CaptionScorer",
    "ParsedCaption",
    "PointingGame",
    "PointingTrial",
    "SceneTruth",
    "TokenAccuracy",
    "TrueObject",
    "colour_confusion_matrix",
    "generated_words",
    "java_available",
    "judge_caption",
    "judge_captions",
    "load_ground_truth",
    "match_groups",
    "metrics_path_for",
    "best_constant_caption",
    "most_frequent_caption_baseline",
    "parse_model_caption",
    "relation_groups",
    "relation_verdict_kind",
    "point_caption",
    "pointing_game",
    "python_tokenize",
    "read_metrics",
    "read_results",
    "reference_agreement",
    "score_against_folds",
    "score_captions",
    "score_correctness",
    "score_floor",
    "shape_confusion_matrix",
    "spice_unavailable_reason",
    "token_accuracy",
    "token_accuracy_counts",
    "write_results",
]
