"""Caption a dataset split and score it: n-gram metrics, and correctness on shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ptlib.data.datasets import CaptionDataset
from ptlib.data.vocab import Vocabulary
from ptlib.metrics.captions import METRIC_KEYS, CaptionScorer, score_captions
from ptlib.metrics.references import (
    best_constant_caption,
    reference_agreement,
    score_against_folds,
    score_floor,
)
from ptlib.models.captioner import Captioner
from ptlib.train.captioning import caption_split


def caption_dataset(
    model: Captioner, dataset: CaptionDataset, vocab: Vocabulary, **options: Any
) -> tuple[dict[int, str], dict[int, list[str]]]:
    """Generate one caption per image of a split.

    Args:
        model: A :class:`ptlib.models.Captioner`.
        dataset: An eval-mode dataset (all references per image).
        vocab: Decodes the generated ids.
        **options: Keyword arguments of :func:`~ptlib.train.captioning.caption_split`
            (``device``, ``method``, ``beam_size``, ``max_len``, ``batch_size``,
            ``max_images``, ``show_progress``).

    Returns:
        ``(predictions, references)``: image id -> caption, image id -> references.
    """
    predictions: dict[int, str] = {}
    references: dict[int, list[str]] = {}
    for batch in caption_split(model, dataset, vocab, **options):
        predictions.update(zip(batch.image_ids, batch.captions, strict=True))
        references.update((i, list(r)) for i, r in zip(batch.image_ids, batch.references,
                                                       strict=True))
    return predictions, references


def floor_model_ceiling(
    predictions: Mapping[int, str],
    references: Mapping[int, list[str]],
    train_references: Mapping[Any, Sequence[str]],
    *,
    metrics: tuple[str, ...] = ("BLEU", "METEOR", "ROUGE_L", "CIDEr"),
) -> dict[str, Any]:
    """Score the model beside its floor and ceiling, all on the same reference folds.

    In fold ``k`` every caption (the model's, the floor's, and reference ``k`` as
    the ceiling's) is scored against the image's references without reference
    ``k``; scores are averaged over the folds. A score only means something
    between these two: the floor writes one constant caption for every image,
    the best one chosen on the training split
    (:func:`~ptlib.metrics.references.best_constant_caption`: among the most
    frequent training captions, the one with the best CIDEr-D against the
    training references; the scored split is never used to choose it); the
    ceiling is how well one human-style reference agrees with the others.

    Args:
        predictions: Image id -> generated caption.
        references: Image id -> the scored split's references.
        train_references: Training image id -> its captions (e.g.
            ``{r.image_id: r.captions for r in dataset.records}``).
        metrics: Metrics to compute.

    Returns:
        ``{"model", "floor", "ceiling"}`` (metric dicts; the floor's also has
        ``"caption"`` and ``"choice"``: the rule and the candidates with their
        training CIDEr-D) and ``"of_ceiling"``: each metric of the model as a
        fraction of the ceiling.

    Raises:
        TypeError: If ``train_references`` is a flat list of captions (the
            choice needs each training image's references).
    """
    if not isinstance(train_references, Mapping):
        raise TypeError(
            "floor_model_ceiling: train_references must map training image id -> captions "
            f"(got {type(train_references).__name__}); the floor is chosen against each "
            "training image's references"
        )
    choice = best_constant_caption(train_references)
    with CaptionScorer(metrics) as scorer:
        scored_refs = {i: references[i] for i in predictions}
        model = score_against_folds(scored_refs, predictions, scorer=scorer)
        floor = score_floor((), scored_refs, scorer=scorer, caption=choice["caption"])
        ceiling = reference_agreement(scored_refs, scorer=scorer)
    floor["choice"] = {"rule": choice["rule"], "candidates": choice["candidates"]}
    keys = [key for metric in metrics for key in METRIC_KEYS[metric]]
    of_ceiling = {
        k: model[k] / ceiling[k]
        for k in keys
        if isinstance(model.get(k), float) and isinstance(ceiling.get(k), float) and ceiling[k]
    }
    strip = ("per_fold",)
    return {
        "model": {k: v for k, v in model.items() if k not in strip},
        "floor": {k: v for k, v in floor.items() if k not in strip},
        "ceiling": {k: v for k, v in ceiling.items() if k not in strip},
        "of_ceiling": of_ceiling,
    }


def evaluate_captions(
    predictions: Mapping[int, str],
    references: Mapping[int, list[str]],
    *,
    metrics: tuple[str, ...] = ("BLEU", "METEOR", "ROUGE_L", "CIDEr", "SPICE"),
    instances: str | Path | None = None,
) -> dict[str, Any]:
    """Score generated captions against all references (and ground truth on shapes).

    Args:
        predictions: Image id -> generated caption.
        references: Image id -> reference captions.
        metrics: Which pycocoevalcap metrics to compute.
        instances: For the shapes dataset, the split's ``instances_*.json``: adds
            the caption-correctness metrics under ``"correctness"``.

    Returns:
        The metric dictionary of :func:`ptlib.metrics.score_captions`, plus
        ``"correctness"`` when ``instances`` is given.
    """
    scores: dict[str, Any] = score_captions(references, predictions, metrics=metrics)
    if instances is not None:
        from ptlib.metrics import correctness

        truth = correctness.load_ground_truth(instances)
        scores["correctness"] = correctness.score_correctness(predictions, truth)
    return scores
