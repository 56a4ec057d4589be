"""Per-image views of a scored split: CIDEr-D of each caption, and the kinds of error it makes.

Two questions a single corpus score cannot answer: *which* captions score
well, and *what* is wrong with each caption. Put side by side they show where
an n-gram metric and correctness disagree (chapter 6).

**Per-image CIDEr-D.** CIDEr-D weighs n-grams by an IDF computed from the
references of all scored images, so scoring one image on its own is
meaningless (it is always 0). :func:`per_image_cider` scores the whole set
once, exactly as :class:`~ptlib.metrics.captions.CaptionScorer` does, and
returns pycocoevalcap's per-image values; their mean is the corpus CIDEr-D.

**Error kinds** (:func:`error_kinds`) read one
:class:`~ptlib.metrics.correctness.CaptionJudgement` through its group
matching (:func:`~ptlib.metrics.correctness.match_groups`):

* ``unparseable``: the grammar cannot read the caption;
* ``wrong shape`` / ``wrong colour`` / ``wrong size`` / ``wrong count``: a
  named group is matched to a true group but names that attribute wrongly
  (a match needs the same colour or the same shape, so a wrong shape comes
  with the right colour and vice versa);
* ``missing object``: a true group that no named group is matched to;
* ``hallucinated object``: a named group matched to no true group (it
  shares neither colour nor shape with any object left unmatched), unless it
  repeats a matched group (that is a repetition);
* ``repetition``: the same ``(size, colour, shape)`` named twice;
* ``false relation``: the stated relation does not hold between the matched groups.

A caption can make several kinds of error; one with none is correct in
every respect the grammar can express. Note that
:func:`~ptlib.metrics.correctness.score_correctness`'s ``hallucination_rate``
counts differently (a named ``(colour, shape)`` absent from the image, so a
wrong shape counts there as a hallucination too).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from ptlib.metrics.captions import CaptionScorer, check_predictions, check_references
from ptlib.metrics.correctness import CaptionJudgement

ERROR_KINDS: tuple[str, ...] = (
    "unparseable",
    "wrong shape",
    "wrong colour",
    "wrong size",
    "wrong count",
    "missing object",
    "hallucinated object",
    "repetition",
    "false relation",
)
"""Every kind :func:`error_kinds` reports, in the order it reports them."""


def per_image_cider(
    references: Mapping[Hashable, Sequence[str]],
    predictions: Mapping[Hashable, str],
    *,
    scorer: CaptionScorer | None = None,
) -> dict[Hashable, float]:
    """CIDEr-D of each caption, with the IDF of the whole scored set.

    Args:
        references: Image id -> reference captions (raw text). Images without a
            prediction are ignored.
        predictions: Image id -> generated caption (raw text), at least 2 images.
        scorer: A scorer whose tokenizer to use (default: a new CIDEr-only
            :class:`~ptlib.metrics.captions.CaptionScorer`, PTB when Java is found).

    Returns:
        Image id -> CIDEr-D, in the order of ``predictions``. The mean equals
        the corpus CIDEr-D of :func:`~ptlib.metrics.captions.score_captions`.

    Raises:
        ValueError: Fewer than 2 predictions (a single image always scores 0),
            or a prediction without references.
        TypeError: Malformed references or predictions.
    """
    check_references(references)
    check_predictions(predictions, references)
    if len(predictions) < 2:
        raise ValueError(
            f"per_image_cider needs at least 2 captions, got {len(predictions)}: CIDEr-D's IDF "
            "comes from the scored images' references, so one image alone always scores 0"
        )
    from pycocoevalcap.cider.cider import Cider

    own = scorer is None
    active = CaptionScorer(("CIDEr",)) if scorer is None else scorer
    try:
        ids = list(predictions)
        tokenized = active.tokenize(
            {("ref", i): references[i] for i in ids} | {("hyp", i): [predictions[i]] for i in ids}
        )
    finally:
        if own:
            active.close()
    gts = {i: tokenized[("ref", i)] for i in ids}
    res = {i: [tokenized[("hyp", i)][0]] for i in ids}
    if not any(text.split() for texts in gts.values() for text in texts):
        return dict.fromkeys(ids, 0.0)  # pycocoevalcap fails on an empty n-gram table
    _, scores = Cider().compute_score(gts, res)
    return {i: float(s) for i, s in zip(ids, scores, strict=True)}


def error_kinds(judgement: CaptionJudgement) -> tuple[str, ...]:
    """The kinds of error one judged caption makes (see the module docstring).

    Args:
        judgement: From :func:`~ptlib.metrics.correctness.judge_caption`.

    Returns:
        The kinds, in :data:`ERROR_KINDS` order, without duplicates; empty
        for a correct caption.
    """
    if not judgement.parsed:
        return ("unparseable",)
    found: set[str] = set()
    for named, true in judgement.matched_pairs():
        for attribute in ("shape", "colour", "size", "count"):
            if getattr(named, attribute) != getattr(true, attribute):
                found.add(f"wrong {attribute}")
    matched_named = {i for i, _ in judgement.matches}
    matched_true = {j for _, j in judgement.matches}
    if len(matched_true) < len(judgement.true_groups):
        found.add("missing object")
    matched_kinds = {judgement.named[i].kind for i in matched_named}
    if any(i not in matched_named and group.kind not in matched_kinds
           for i, group in enumerate(judgement.named)):
        found.add("hallucinated object")  # a second mention of a matched group is a repetition
    if judgement.repeated:
        found.add("repetition")
    if judgement.relation_ok is False:
        found.add("false relation")
    return tuple(kind for kind in ERROR_KINDS if kind in found)
