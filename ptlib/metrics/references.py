"""Floor and ceiling: what a caption score means on a given dataset.

A BLEU-4 of 0.5 is excellent on COCO and poor on a synthetic dataset whose
captions follow a grammar. So every score is shown beside two others computed
the same way on the same test images:

* **floor**: :func:`score_floor`, one constant caption predicted for every
  image (a model that ignores the image): the best constant caption chosen
  on the training split (:func:`best_constant_caption`), never on the
  scored images;
* **ceiling**: :func:`reference_agreement`, how well one human (or generator)
  reference agrees with the others;
* **model**: :func:`score_against_folds`, the model's captions.

All three use the same five folds: in fold ``k`` the reference ``k`` of each
image is held out, and scoring uses the remaining references (four on COCO).
The ceiling scores the held-out reference itself; the model and the floor
score their caption against the same remaining references. Each metric is
averaged over the folds. An image with ``R < n_folds`` references holds out
reference ``k mod R`` in fold ``k``. CIDEr-D's IDF comes from the remaining
references of the scored images, the same for all three.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from ptlib.metrics.captions import (
    DEFAULT_METRICS,
    CaptionScorer,
    TokenizerChoice,
    check_predictions,
    check_references,
)
from ptlib.metrics.tokenization import python_tokenize

_SUMMARY_KEYS = ("unavailable", "tokenizer", "n_images", "n_empty_predictions")


def _check_enough_references(references: Mapping[Hashable, Sequence[str]], n_folds: int) -> None:
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 1:
        raise ValueError(f"n_folds={n_folds!r} must be a positive int (5 for COCO)")
    for image_id, texts in references.items():
        if len(texts) < 2:
            raise ValueError(
                f"references[{image_id!r}] has {len(texts)} reference; fold scoring holds one "
                "out and scores against the rest, so every image needs at least 2"
            )


def _held_out_index(n_references: int, fold: int) -> int:
    return fold % n_references


def _without(texts: Sequence[str], index: int) -> list[str]:
    return [text for position, text in enumerate(texts) if position != index]


def _average_folds(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    averaged: dict[str, Any] = {}
    for key in per_fold[0]:
        if key in _SUMMARY_KEYS:
            continue
        values = [fold[key] for fold in per_fold]
        averaged[key] = None if any(v is None for v in values) else sum(values) / len(values)
    return averaged


def _fold_result(
    scorer: CaptionScorer, per_fold: list[dict[str, Any]], n_images: int, n_empty: int
) -> dict[str, Any]:
    result = _average_folds(per_fold)
    result["unavailable"] = dict(scorer.unavailable)
    result["tokenizer"] = scorer.tokenizer
    result["n_images"] = n_images
    result["n_empty_predictions"] = n_empty
    result["n_folds"] = len(per_fold)
    result["per_fold"] = [
        {key: value for key, value in fold.items() if key not in _SUMMARY_KEYS} for fold in per_fold
    ]
    return result


class _ScorerScope:
    """Use the caller's scorer, or make one for this call and close it after."""

    def __init__(
        self, scorer: CaptionScorer | None, metrics: Iterable[str], tokenizer: TokenizerChoice
    ) -> None:
        self._own = scorer is None
        self._scorer = scorer if scorer is not None else CaptionScorer(metrics, tokenizer=tokenizer)

    def __enter__(self) -> CaptionScorer:
        return self._scorer

    def __exit__(self, *exc_info: object) -> None:
        if self._own:
            self._scorer.close()


def reference_agreement(
    references: Mapping[Hashable, Sequence[str]],
    *,
    n_folds: int = 5,
    scorer: CaptionScorer | None = None,
    metrics: Iterable[str] = DEFAULT_METRICS,
    tokenizer: TokenizerChoice = "auto",
) -> dict[str, Any]:
    """The ceiling: each held-out reference scored against the other references.

    Args:
        references: Image id -> its reference captions (at least 2 each).
        n_folds: Number of folds (5: COCO's five references).
        scorer: A :class:`~ptlib.metrics.captions.CaptionScorer` to reuse;
            ``metrics`` and ``tokenizer`` are used only when it is ``None``.
        metrics: Metrics to compute.
        tokenizer: ``"auto"``, ``"ptb"`` or ``"python"``.

    Returns:
        The metrics averaged over folds (keys as in
        :meth:`~ptlib.metrics.captions.CaptionScorer.score`), plus ``"n_folds"`` and ``"per_fold"``
        (each fold's metric values). ``"n_empty_predictions"`` counts held-out
        references that tokenise to nothing.

    Raises:
        ValueError: An image with fewer than 2 references (named).
    """
    check_references(references)
    _check_enough_references(references, n_folds)
    with _ScorerScope(scorer, metrics, tokenizer) as active:
        tokenized = active.tokenize(references)
        per_fold = []
        empty_held_out: set[tuple[Hashable, int]] = set()
        for fold in range(n_folds):
            held = {i: _held_out_index(len(texts), fold) for i, texts in tokenized.items()}
            predictions = {i: tokenized[i][held[i]] for i in tokenized}
            empty_held_out |= {(i, held[i]) for i, text in predictions.items() if not text}
            rest = {i: _without(tokenized[i], held[i]) for i in tokenized}
            per_fold.append(active.score_tokenized(rest, predictions))
        return _fold_result(active, per_fold, len(tokenized), len(empty_held_out))


def score_against_folds(
    references: Mapping[Hashable, Sequence[str]],
    predictions: Mapping[Hashable, str],
    *,
    n_folds: int = 5,
    scorer: CaptionScorer | None = None,
    metrics: Iterable[str] = DEFAULT_METRICS,
    tokenizer: TokenizerChoice = "auto",
) -> dict[str, Any]:
    """Score captions on the same folds as :func:`reference_agreement`, for a fair comparison.

    In fold ``k`` each prediction is scored against its image's references
    without reference ``k``; every metric is averaged over the folds.

    Args:
        references: Image id -> reference captions (at least 2 per scored image).
        predictions: Image id -> generated caption (raw text).
        n_folds: Number of folds (5 for COCO).
        scorer: A scorer to reuse (else one is made from ``metrics``, ``tokenizer``).
        metrics: Metrics to compute.
        tokenizer: ``"auto"``, ``"ptb"`` or ``"python"``.

    Returns:
        As :func:`reference_agreement`.
    """
    check_references(references)
    check_predictions(predictions, references)
    scored = {i: references[i] for i in predictions}
    _check_enough_references(scored, n_folds)
    with _ScorerScope(scorer, metrics, tokenizer) as active:
        tokenized = active.tokenize(
            {("ref", i): texts for i, texts in scored.items()}
            | {("hyp", i): [text] for i, text in predictions.items()}
        )
        refs = {i: tokenized[("ref", i)] for i in scored}
        hyps = {i: tokenized[("hyp", i)][0] for i in scored}
        per_fold = []
        for fold in range(n_folds):
            rest = {
                i: _without(texts, _held_out_index(len(texts), fold)) for i, texts in refs.items()
            }
            per_fold.append(active.score_tokenized(rest, hyps))
        n_empty = sum(1 for text in hyps.values() if not text.strip())
        return _fold_result(active, per_fold, len(hyps), n_empty)


def most_frequent_caption_baseline(
    train_captions: Iterable[str] | Mapping[Hashable, Sequence[str]],
) -> str:
    """The floor's caption: the most frequent training caption after tokenisation.

    Captions are compared after the shared tokenisation rule (so ``"A red
    circle."`` and ``"a red circle"`` count as one); ties go to the
    alphabetically first caption, so the result never depends on order.

    Args:
        train_captions: Training captions, as a flat iterable of strings or as
            image id -> captions.

    Returns:
        The caption, tokenised and space-joined (e.g. ``"a red circle"``).

    Raises:
        ValueError: No caption with at least one token.
    """
    if isinstance(train_captions, str):
        raise TypeError("train_captions must be many captions (a list or id -> list), not one str")
    texts: Iterable[Any] = (
        (text for group in train_captions.values() for text in group)
        if isinstance(train_captions, Mapping)
        else train_captions
    )
    counts: Counter[str] = Counter()
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"train caption #{position} is {type(text).__name__}, not a str")
        tokens = python_tokenize(text)
        if tokens:
            counts[" ".join(tokens)] += 1
    if not counts:
        raise ValueError("train_captions holds no caption with a word in it")
    best = max(counts.values())
    return min(caption for caption, count in counts.items() if count == best)


FLOOR_TOP_K: int = 5
"""Candidates of :func:`best_constant_caption`: the training captions with the K largest counts."""

FLOOR_MAX_IMAGES: int = 1000
"""Training images (the first by id) whose references judge the candidates."""

_CONSTANT_CACHE: dict[tuple, dict[str, Any]] = {}


def best_constant_caption(
    train_references: Mapping[Hashable, Sequence[str]],
    *,
    top_k: int = FLOOR_TOP_K,
    max_images: int = FLOOR_MAX_IMAGES,
) -> dict[str, Any]:
    """The floor's caption: the best constant caption, chosen on the training split only.

    The rule: the candidates are the training captions (after tokenisation)
    whose count is among the ``top_k`` largest counts (every caption tied at
    the boundary included). Each candidate is written for every one of the
    first ``max_images`` training images (by id) and scored with CIDEr-D
    against those images' own references (Python tokenizer, all references,
    no folds); the highest score wins, ties going to the alphabetically first
    caption. Nothing from the validation or test split is used.

    Why not simply the most frequent caption: on the shapes dataset every
    single-object image has one reference per template, so the most frequent
    count is always shared by the five phrasings of one kind ("a large blue
    square", "an image of a large blue square", ...) and an alphabetical
    tie-break picked the shortest, which scores lowest.

    Args:
        train_references: Training image id -> its reference captions.
        top_k: How many of the largest counts give candidates (>= 1).
        max_images: How many training images judge the candidates (>= 1).

    Returns:
        ``{"caption", "rule", "candidates"}``; ``candidates`` lists
        ``{"caption", "count", "train_cider"}`` best first.

    Raises:
        TypeError: If ``train_references`` is not a mapping of image id -> captions.
        ValueError: If it holds no caption with a word, or ``top_k``/``max_images`` < 1.
    """
    if not isinstance(train_references, Mapping):
        raise TypeError("train_references must map training image id -> its captions, got "
                        f"{type(train_references).__name__}")
    for name, value in (("top_k", top_k), ("max_images", max_images)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")
    key = (top_k, max_images, tuple(sorted((str(i), tuple(t)) for i, t in
                                           train_references.items())))
    cache_key = (top_k, max_images, hash(key))
    if cache_key in _CONSTANT_CACHE:
        return _CONSTANT_CACHE[cache_key]
    counts: Counter[str] = Counter()
    for image_id, texts in train_references.items():
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"train_references[{image_id!r}] holds a "
                                f"{type(text).__name__}, not a str caption")
            tokens = python_tokenize(text)
            if tokens:
                counts[" ".join(tokens)] += 1
    if not counts:
        raise ValueError("train_references holds no caption with a word in it")
    kept_counts = sorted(set(counts.values()), reverse=True)[:top_k]
    candidates = sorted(c for c, n in counts.items() if n >= kept_counts[-1])
    judges = sorted(train_references, key=str)[:max_images]
    refs = {i: list(train_references[i]) for i in judges if len(train_references[i])}
    scored = []
    with CaptionScorer(("CIDEr",), tokenizer="python") as scorer:
        tokenized = scorer.tokenize(refs)
        for caption in candidates:
            cider = scorer.score_tokenized(tokenized, dict.fromkeys(tokenized, caption))["CIDEr-D"]
            scored.append({"caption": caption, "count": counts[caption],
                           "train_cider": float(cider)})
    scored.sort(key=lambda c: (-c["train_cider"], c["caption"]))
    result = {
        "caption": scored[0]["caption"],
        "rule": (f"best training CIDEr-D among the captions with the {top_k} largest training "
                 f"counts, judged on the references of {len(refs)} training images"),
        "candidates": scored,
    }
    _CONSTANT_CACHE[cache_key] = result
    return result


def score_floor(
    train_captions: Iterable[str] | Mapping[Hashable, Sequence[str]],
    references: Mapping[Hashable, Sequence[str]],
    *,
    n_folds: int = 5,
    scorer: CaptionScorer | None = None,
    metrics: Iterable[str] = DEFAULT_METRICS,
    tokenizer: TokenizerChoice = "auto",
    caption: str | None = None,
) -> dict[str, Any]:
    """The floor: one constant caption predicted for every test image.

    Scored with :func:`score_against_folds`, like the model and the ceiling.

    Args:
        train_captions: Training captions (flat, or image id -> captions).
        references: Test image id -> reference captions.
        n_folds, scorer, metrics, tokenizer: As :func:`score_against_folds`.
        caption: The constant caption (e.g. from :func:`best_constant_caption`);
            default :func:`most_frequent_caption_baseline` of ``train_captions``.

    Returns:
        As :func:`score_against_folds`, plus ``"caption"``: the baseline caption.
    """
    if caption is None:
        caption = most_frequent_caption_baseline(train_captions)
    check_references(references)
    predictions = dict.fromkeys(references, caption)
    result = score_against_folds(
        references,
        predictions,
        n_folds=n_folds,
        scorer=scorer,
        metrics=metrics,
        tokenizer=tokenizer,
    )
    result["caption"] = caption
    return result
