"""Caption correctness on the shapes dataset: what a caption names against what the image holds.

BLEU and CIDEr reward fluent template text; they cannot tell "a small green
triangle" from "a small green diamond" apart from one word. The shapes
dataset's captions come from a known grammar (:mod:`ptlib.data.grammar`), so
what a caption asserts can be read back exactly and checked against the
image's objects (``instances_{split}.json``).

Vocabulary used below
---------------------
* A *group* is a set of objects sharing size, colour and shape, named by one
  noun phrase with a count (``"two small red circles"``): a
  :class:`~ptlib.data.grammar.Group`. An image's *true groups* are its objects
  grouped by ``(size, colour, shape)``; a caption's *named groups* are its
  noun phrases in order of first mention (a definite ``"the ..."`` refers back
  to an earlier group of the same kind and names nothing new).
* *Objects* count with multiplicity: ``"two small red circles"`` names two.

The rules, stated once
----------------------
**Parsing.** :func:`parse_model_caption` wraps the grammar's
:func:`~ptlib.data.grammar.parse_caption`. A caption it rejects (a word outside
the grammar, an incomplete noun phrase, a count that disagrees with the noun,
two relations, a relation without an object) or one that names no object at
all (empty, filler only) is *unparseable*: it is returned with
``parsed=False`` and the reason, and counted, never dropped. Grammatical but
odd captions parse: a group named twice (a *repetition*), or ``"the ..."``
without an earlier mention (the grammar reads it as one object if singular,
two if plural).

**Matching named groups to true groups** (:func:`match_groups`), used for the
per-attribute accuracies, the confusion matrices and (only as a fallback, see
``relation_accuracy``) the relation check: a
one-to-one matching in which a named group may only be paired with a true
group that has the same colour or the same shape (a named group sharing
neither describes no object of the image: it is a hallucination, and the
true group is missing). Among such matchings the one with the most agreeing
attributes in total (colour, size, shape, count; up to 4 per pair) is chosen;
ties go to more agreeing colours, then shapes, then sizes, then counts, then
to the earliest named group taking the earliest true group.

**Metrics** (:func:`score_correctness`, per image :func:`judge_caption`):

* ``exact_set_accuracy`` (the headline, called *strict exact set* in the
  course): the caption names exactly the image's objects as colour + shape
  with counts, nothing extra (size ignored; the multiset of named ``(colour,
  shape)`` objects equals the image's), **and names no kind twice**: two
  noun phrases for the same ``(size, colour, shape)`` (``"a large red circle
  ... and there is also a large red circle"`` for two large red circles) get
  no credit, because no reference ever says that (each reference names each
  kind once, with its count).
  ``exact_set_accuracy_lenient`` (*lenient exact set*) drops the no-repeat
  condition: it is the multiset test alone, the headline of earlier versions.
  ``exact_set_accuracy_sized`` is the strict test with the right sizes too.
  These are the only metrics over *all* images: an unparseable caption
  counts as wrong.
* Every other metric is over the *parsed* captions only (``n_parsed`` of
  ``n_images``; ``n_unparseable`` and examples are always reported).
* ``attribute_accuracy``: ``{colour, size, shape, count}``, the fraction of
  matched (named, true) group pairs that agree on that attribute
  (``n_matched_groups`` pairs).
* ``object_precision`` / ``object_recall`` / ``object_f1``: objects as
  ``(colour, shape)`` with multiplicity, micro-averaged over images: true
  positives per image are ``sum_k min(named_k, true_k)``. The ``_strict``
  versions use ``(size, colour, shape)``.
* ``hallucination_rate``: the fraction of named groups whose ``(colour,
  shape)`` does not occur in the image at all (CHAIR-i style: naming three
  red circles where there is one is a count error, not a hallucination).
  ``hallucinated_caption_rate``: the fraction of captions with at least one.
* ``repetition_rate``: the fraction of captions that name the same
  ``(size, colour, shape)`` group in two noun phrases.
* ``relation_accuracy``: among captions that assert a relation whose subject
  and object can both be resolved to true groups (``n_relation_scored`` of
  ``n_relation_asserted``), the fraction for which
  :func:`~ptlib.data.grammar.relation_holds` is true on those groups' box
  centres. **Resolving a relation's subject and object**
  (:func:`relation_groups`): a named group whose ``(size, colour, shape)``
  exists exactly in the image is the true group of that kind, whatever the
  matching paired it with (so a relation is judged on the objects the caption
  names whenever those exist); only a named group with no exact counterpart
  falls back to its matched true group (a described-but-wrong object, e.g.
  the wrong size); a named group with neither is unresolved: the relation is
  counted in ``n_relation_asserted`` but not scored. A relation whose two ends
  resolve to the same true group (``"a red circle is to the left of a red
  circle"`` where the image's red circles form one group) is scored as not
  holding: the grammar relates two different groups, never a group to itself.
  ``n_relation_exact``: scored relations whose subject and object both exist
  exactly. ``relation_breakdown``: the scored relations by verdict kind
  (:func:`relation_verdict_kind`): ``holds``, ``opposite`` (the inverse
  relation holds, e.g. ``left of`` said where ``right of`` is true),
  ``other_axis`` (no relation on the stated axis, one on the other), ``none``
  (no relation holds between the two groups), ``self`` (a group related to
  itself).
* ``shape_confusion`` / ``colour_confusion``: ``{"labels", "counts"}`` with
  ``counts[true][named]`` over matched group pairs (see
  :mod:`ptlib.metrics.confusion`).

A rate with nothing to count (e.g. no caption asserted a relation) is ``None``.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptlib.data.annotations import AnnotationError, read_json, require
from ptlib.data.grammar import (
    COLOURS,
    INVERSE_RELATION,
    RELATIONS,
    SHAPES,
    SIZES,
    CaptionParseError,
    Group,
    Relation,
    parse_caption,
    relation_holds,
)
from ptlib.metrics.confusion import confusion_counts

ATTRIBUTES: tuple[str, ...] = ("colour", "size", "shape", "count")
"""The attributes of a group that per-attribute accuracy checks."""

_TIE_BREAK_ORDER: tuple[str, ...] = ("colour", "shape", "size", "count")

RELATION_VERDICT_KINDS: tuple[str, ...] = ("holds", "opposite", "other_axis", "none", "self")
"""The kinds of ``relation_breakdown``: :func:`relation_verdict_kind`'s, then ``"self"``."""


# --------------------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class TrueObject:
    """One object of an image, as stored in ``instances_{split}.json``.

    Attributes:
        shape: One of :data:`~ptlib.data.grammar.SHAPES`.
        colour: One of :data:`~ptlib.data.grammar.COLOURS`.
        size: One of :data:`~ptlib.data.grammar.SIZES`.
        bbox: Tight box ``(x, y, w, h)`` in pixels (x right, y down).
        centre: ``(x, y)`` centre of the box in pixels.
    """

    shape: str
    colour: str
    size: str
    bbox: tuple[float, float, float, float]
    centre: tuple[float, float]

    @property
    def kind(self) -> tuple[str, str, str]:
        """``(size, colour, shape)``, as :attr:`ptlib.data.grammar.Group.kind`."""
        return (self.size, self.colour, self.shape)


@dataclass(frozen=True)
class SceneTruth:
    """What one image holds.

    Attributes:
        image_id: The COCO image id.
        width: Image width in pixels.
        height: Image height in pixels.
        objects: The image's objects, in file order.
    """

    image_id: int
    width: int
    height: int
    objects: tuple[TrueObject, ...]

    @property
    def image_side(self) -> float:
        """The side the relation margin scales with (shapes images are square)."""
        return float(max(self.width, self.height))

    @functools.cached_property
    def groups(self) -> tuple[Group, ...]:
        """The true groups (objects sharing size, colour, shape), in order of first object."""
        counts = Counter(o.kind for o in self.objects)  # insertion order: first object first
        return tuple(Group(count, *kind) for kind, count in counts.items())

    @functools.cached_property
    def group_centres(self) -> tuple[tuple[tuple[float, float], ...], ...]:
        """For each of :attr:`groups`, the centres of its objects."""
        return tuple(
            tuple(o.centre for o in self.objects if o.kind == g.kind) for g in self.groups
        )


def _number_list(entry: dict, key: str, length: int, where: str, path: Path) -> tuple[float, ...]:
    values = require(entry, key, list, where, path)
    if len(values) != length or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise AnnotationError(f"{path}: {where}[{key!r}] must be a list of {length} numbers, "
                              f"got {values!r:.60}")
    return tuple(float(v) for v in values)


def _word(entry: dict, key: str, allowed: Sequence[str], where: str, path: Path) -> str:
    value = require(entry, key, str, where, path)
    if value not in allowed:
        raise AnnotationError(
            f"{path}: {where}[{key!r}] is {value!r}, not one of {tuple(allowed)}; "
            "is this an instances file of the shapes dataset?"
        )
    return value


def load_ground_truth(instances_json: str | Path) -> dict[int, SceneTruth]:
    """Read the objects of every image of a shapes split.

    Args:
        instances_json: ``ROOT/annotations/instances_{split}.json`` of a dataset
            written by :func:`ptlib.data.shapes.generate_shapes_dataset` (see
            :func:`ptlib.data.shapes.shapes_paths`).

    Returns:
        Image id -> :class:`SceneTruth`, in the file's image order. An
        annotation without ``centre`` gets the centre of its ``bbox``.

    Raises:
        FileNotFoundError: If the file is missing.
        AnnotationError: If a key is missing or wrong, naming the file, the entry and the key.
    """
    path = Path(instances_json)
    data = read_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: the top level must be a JSON object with 'images' and "
                              "'annotations'")
    images = require(data, "images", list, "the top level", path)
    annotations = require(data, "annotations", list, "the top level", path)
    sizes: dict[int, tuple[int, int]] = {}
    for i, image in enumerate(images):
        image_id = require(image, "id", int, f"images[{i}]", path)
        if image_id in sizes:
            raise AnnotationError(f"{path}: images[{i}] repeats image id {image_id}")
        sizes[image_id] = (
            require(image, "width", int, f"images[{i}]", path),
            require(image, "height", int, f"images[{i}]", path),
        )
    objects: dict[int, list[TrueObject]] = {image_id: [] for image_id in sizes}
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        image_id = require(ann, "image_id", int, where, path)
        if image_id not in objects:
            raise AnnotationError(f"{path}: {where} refers to image_id {image_id}, "
                                  "which is not in 'images'")
        bbox = _number_list(ann, "bbox", 4, where, path)
        if "centre" in ann:
            centre = _number_list(ann, "centre", 2, where, path)
        else:
            centre = (bbox[0] + bbox[2] / 2, bbox[1] + bbox[3] / 2)
        objects[image_id].append(TrueObject(
            shape=_word(ann, "shape", SHAPES, where, path),
            colour=_word(ann, "colour", COLOURS, where, path),
            size=_word(ann, "size", SIZES, where, path),
            bbox=bbox,  # type: ignore[arg-type]
            centre=centre,  # type: ignore[arg-type]
        ))
    return {
        image_id: SceneTruth(image_id, w, h, tuple(objects[image_id]))
        for image_id, (w, h) in sizes.items()
    }


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ParsedCaption:
    """What a (model) caption asserts, or why it could not be read.

    Attributes:
        caption: The caption as given.
        parsed: Whether it follows the shapes grammar and names at least one object.
        groups: The named groups in order of first mention (empty when not parsed).
        relation: The asserted relation (indices into ``groups``), or ``None``.
        reason: Why it is unparseable (``None`` when parsed).
    """

    caption: str
    parsed: bool
    groups: tuple[Group, ...] = ()
    relation: Relation | None = None
    reason: str | None = None

    @property
    def repeated(self) -> bool:
        """Whether two noun phrases name the same ``(size, colour, shape)`` group."""
        return len({g.kind for g in self.groups}) < len(self.groups)


def parse_model_caption(caption: str) -> ParsedCaption:
    """Parse a caption with the shapes grammar, never raising on bad captions.

    Args:
        caption: A generated (or reference) caption.

    Returns:
        A :class:`ParsedCaption`; ``parsed=False`` with a ``reason`` for a
        caption the grammar rejects or one that names no object.

    Raises:
        TypeError: If ``caption`` is not a string.
    """
    if not isinstance(caption, str):
        raise TypeError(f"caption must be a str, got {type(caption).__name__}: {caption!r:.60}")
    try:
        meaning = parse_caption(caption)
    except CaptionParseError as err:
        return ParsedCaption(caption, False, reason=str(err))
    if not meaning.groups:
        reason = "empty caption" if not caption.strip() else "names no object"
        return ParsedCaption(caption, False, reason=f"{reason} ({caption!r})")
    return ParsedCaption(caption, True, meaning.groups, meaning.relation)


# --------------------------------------------------------------------------- matching


def _agreement(named: Group, true: Group) -> tuple[int, ...] | None:
    """The score of pairing two groups (compared lexicographically), or None if not allowed."""
    if named.colour != true.colour and named.shape != true.shape:
        return None
    agree = {a: int(getattr(named, a) == getattr(true, a)) for a in ATTRIBUTES}
    return (sum(agree.values()), *(agree[a] for a in _TIE_BREAK_ORDER))


def match_groups(named: Sequence[Group], true: Sequence[Group]) -> tuple[tuple[int, int], ...]:
    """Pair named groups with true groups one to one (the rule in the module docstring).

    Exact dynamic programme over subsets of the true groups: cost
    ``O(len(named) * 2**len(true) * len(true))``; a shapes image has at most 4.

    Args:
        named: The caption's groups.
        true: The image's groups.

    Returns:
        ``(named_index, true_index)`` pairs, sorted by named index.

    Raises:
        ValueError: If there are more than 16 true groups (the programme would be too large).
    """
    if len(true) > 16:
        raise ValueError(f"match_groups handles at most 16 true groups, got {len(true)}")
    zero = (0,) * (1 + len(_TIE_BREAK_ORDER))
    # best[mask] = (score, pairs) over the named groups seen so far, using true groups in mask
    best: dict[int, tuple[tuple[int, ...], tuple[tuple[int, int], ...]]] = {0: (zero, ())}
    for i, group in enumerate(named):
        nxt = dict(best)  # leaving group i unmatched
        for mask, (score, pairs) in best.items():
            for j, truth in enumerate(true):
                if mask >> j & 1:
                    continue
                gain = _agreement(group, truth)
                if gain is None:
                    continue
                candidate = (tuple(s + g for s, g in zip(score, gain, strict=True)),
                             (*pairs, (i, j)))
                target = mask | 1 << j
                if target not in nxt or candidate[0] > nxt[target][0]:
                    nxt[target] = candidate
        best = nxt
    top_score = max(score for score, _ in best.values())
    return next(pairs for score, pairs in best.values() if score == top_score)


# --------------------------------------------------------------------------- judging one caption


@dataclass(frozen=True)
class CaptionJudgement:
    """Everything that is right and wrong about one caption of one image.

    Attributes:
        caption: The caption.
        parsed: Whether it could be parsed (if not, only ``reason`` is meaningful).
        reason: Why it is unparseable, else ``None``.
        named: The named groups, in order of first mention.
        true_groups: The image's groups (:attr:`SceneTruth.groups`).
        matches: ``(named_index, true_index)`` pairs from :func:`match_groups`.
        exact_set: Strict exact set: right colour + shape objects with counts,
            nothing extra, no kind named twice.
        exact_set_lenient: Right colour + shape objects with counts, nothing
            extra (a kind named twice may still add up to the right count).
        exact_set_sized: ``exact_set`` with the right sizes too.
        missing: ``(colour, shape)`` -> how many such objects the caption left out.
        extra: ``(colour, shape)`` -> how many it named beyond those in the image.
        hallucinated: Named groups whose ``(colour, shape)`` is not in the image at all.
        repeated: Whether a group is named twice.
        relation: The asserted relation (indices into ``named``), or ``None``.
        relation_ok: Whether it holds between the true groups its subject and
            object resolve to (:func:`relation_groups`); ``None`` when no
            relation is asserted or its subject/object is unresolved.
        relation_note: Why ``relation_ok`` is ``None``, else ``""``.
        relation_exact: Whether the subject and object both exist exactly in
            the image (``False`` when not scored).
        relation_kind: :func:`relation_verdict_kind` of a scored relation, else ``None``.
    """

    caption: str
    parsed: bool
    reason: str | None
    named: tuple[Group, ...]
    true_groups: tuple[Group, ...]
    matches: tuple[tuple[int, int], ...]
    exact_set: bool
    exact_set_lenient: bool
    exact_set_sized: bool
    missing: dict[tuple[str, str], int]
    extra: dict[tuple[str, str], int]
    hallucinated: tuple[Group, ...]
    repeated: bool
    relation: Relation | None
    relation_ok: bool | None
    relation_note: str
    relation_exact: bool = False
    relation_kind: str | None = None

    def matched_pairs(self) -> list[tuple[Group, Group]]:
        """``(named_group, true_group)`` for every match."""
        return [(self.named[i], self.true_groups[j]) for i, j in self.matches]


def _objects(groups: Sequence[Group], strict: bool) -> Counter:
    counter: Counter = Counter()
    for g in groups:
        counter[g.kind if strict else (g.colour, g.shape)] += g.count
    return counter


_AXIS: dict[str, tuple[str, str]] = {
    "left_of": ("above", "below"), "right_of": ("above", "below"),
    "above": ("left_of", "right_of"), "below": ("left_of", "right_of"),
}


def relation_groups(
    relation: Relation, named: Sequence[Group], matches: Sequence[tuple[int, int]],
    true_groups: Sequence[Group],
) -> tuple[int | None, int | None, bool]:
    """The true groups a relation's subject and object refer to (rule in the module docstring).

    Args:
        relation: The asserted relation (indices into ``named``).
        named: The caption's groups.
        matches: ``(named_index, true_index)`` pairs from :func:`match_groups`.
        true_groups: The image's groups.

    Returns:
        ``(subject_true_index, object_true_index, both_exact)``: an index is
        ``None`` when that role is unresolved; ``both_exact`` says whether both
        resolved through an exact ``(size, colour, shape)`` counterpart.
    """
    by_kind = {g.kind: j for j, g in enumerate(true_groups)}
    to_true = dict(matches)
    resolved: list[int | None] = []
    exact = True
    for index in (relation.subject, relation.object):
        if named[index].kind in by_kind:
            resolved.append(by_kind[named[index].kind])
        else:
            exact = False
            resolved.append(to_true.get(index))
    subject, obj = resolved
    return subject, obj, exact and subject is not None and obj is not None


def relation_verdict_kind(
    relation: str,
    subject_centres: Sequence[tuple[float, float]],
    object_centres: Sequence[tuple[float, float]],
    image_size: float,
) -> str:
    """How a stated relation compares with the geometry of two groups.

    Args:
        relation: One of :data:`~ptlib.data.grammar.RELATIONS`.
        subject_centres: ``(x, y)`` centres of the subject group's objects.
        object_centres: ``(x, y)`` centres of the object group's objects.
        image_size: The image side in pixels.

    Returns:
        ``"holds"``; ``"opposite"`` (the inverse relation holds);
        ``"other_axis"`` (nothing holds on the stated axis, a relation on the
        other axis does); or ``"none"`` (no relation holds).

    Raises:
        ValueError: If ``relation`` is not one of the grammar's relations.
    """
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")
    def holds(name: str) -> bool:
        return relation_holds(name, subject_centres, object_centres, image_size)

    if holds(relation):
        return "holds"
    if holds(INVERSE_RELATION[relation]):
        return "opposite"
    if any(holds(name) for name in _AXIS[relation]):
        return "other_axis"
    return "none"


def _relation_verdict(
    relation: Relation | None, named: Sequence[Group], matches: Sequence[tuple[int, int]],
    truth: SceneTruth,
) -> tuple[bool | None, str, bool, str | None]:
    if relation is None:
        return None, "no relation asserted", False, None
    subject, obj, exact = relation_groups(relation, named, matches, truth.groups)
    unresolved = [role for role, index in (("subject", subject), ("object", obj))
                  if index is None]
    if unresolved:
        return (None, f"relation {' and '.join(unresolved)} not matched to an object of the "
                "image", False, None)
    if subject == obj:  # "a red circle is left of a red circle": not a relation of two groups
        return False, "", exact, "self"
    kind = relation_verdict_kind(
        relation.relation, truth.group_centres[subject], truth.group_centres[obj],
        truth.image_side,
    )
    return kind == "holds", "", exact, kind


def judge_caption(caption: str | ParsedCaption, truth: SceneTruth) -> CaptionJudgement:
    """Compare what one caption names with what its image holds.

    Args:
        caption: The caption, or its :func:`parse_model_caption` result.
        truth: The image's objects.

    Returns:
        A :class:`CaptionJudgement` (rules in the module docstring).
    """
    parsed = caption if isinstance(caption, ParsedCaption) else parse_model_caption(caption)
    true_groups = truth.groups
    if not parsed.parsed:
        return CaptionJudgement(
            caption=parsed.caption, parsed=False, reason=parsed.reason, named=(),
            true_groups=true_groups, matches=(), exact_set=False, exact_set_lenient=False,
            exact_set_sized=False,
            missing=dict(_objects(true_groups, strict=False)), extra={}, hallucinated=(),
            repeated=False, relation=None, relation_ok=None, relation_note="unparseable caption",
        )
    named = parsed.groups
    matches = match_groups(named, true_groups)
    named_objects, true_objects = _objects(named, False), _objects(true_groups, False)
    present = {(g.colour, g.shape) for g in true_groups}
    relation_ok, relation_note, relation_exact, relation_kind = _relation_verdict(
        parsed.relation, named, matches, truth
    )
    lenient = named_objects == true_objects
    return CaptionJudgement(
        caption=parsed.caption,
        parsed=True,
        reason=None,
        named=named,
        true_groups=true_groups,
        matches=matches,
        exact_set=lenient and not parsed.repeated,
        exact_set_lenient=lenient,
        exact_set_sized=(not parsed.repeated
                         and _objects(named, True) == _objects(true_groups, True)),
        missing=dict(true_objects - named_objects),
        extra=dict(named_objects - true_objects),
        hallucinated=tuple(g for g in named if (g.colour, g.shape) not in present),
        repeated=parsed.repeated,
        relation=parsed.relation,
        relation_ok=relation_ok,
        relation_note=relation_note,
        relation_exact=relation_exact,
        relation_kind=relation_kind,
    )


# --------------------------------------------------------------------------- scoring a split


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _object_scores(judgements: Sequence[CaptionJudgement], strict: bool) -> dict[str, Any]:
    hits = named = true = 0
    for j in judgements:
        named_objects, true_objects = _objects(j.named, strict), _objects(j.true_groups, strict)
        hits += sum((named_objects & true_objects).values())
        named += sum(named_objects.values())
        true += sum(true_objects.values())
    precision, recall = _rate(hits, named), _rate(hits, true)
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall),
            "named": named, "true": true}


def judge_captions(
    predictions: Mapping[int, str], truth: Mapping[int, SceneTruth]
) -> dict[int, CaptionJudgement]:
    """:func:`judge_caption` for every prediction, with checked input.

    Args:
        predictions: Image id -> generated caption (e.g. from
            :func:`ptlib.metrics.results.read_results`).
        truth: Image id -> :class:`SceneTruth` (:func:`load_ground_truth`).

    Raises:
        ValueError: If ``predictions`` is empty or names an image that ``truth`` lacks.
        TypeError: If a caption is not a string.
    """
    if not predictions:
        raise ValueError("predictions is empty: there is nothing to score")
    lacking = [image_id for image_id in predictions if image_id not in truth]
    if lacking:
        raise ValueError(
            f"{len(lacking)} predicted image ids are not in the ground truth (first: "
            f"{lacking[:5]}); load the instances file of the split the captions were made for"
        )
    judgements = {}
    for image_id, caption in predictions.items():
        if not isinstance(caption, str):
            raise TypeError(f"predictions[{image_id!r}] must be a str caption, "
                            f"got {type(caption).__name__}")
        judgements[image_id] = judge_caption(caption, truth[image_id])
    return judgements


def summarise_judgements(
    judgements: Mapping[int, CaptionJudgement], max_examples: int = 5
) -> dict[str, Any]:
    """Aggregate per-image judgements into the metrics of :func:`score_correctness`."""
    all_judgements = list(judgements.values())
    parsed = [j for j in all_judgements if j.parsed]
    unparseable = [(image_id, j) for image_id, j in judgements.items() if not j.parsed]
    pairs = [pair for j in parsed for pair in j.matched_pairs()]
    n_named_groups = sum(len(j.named) for j in parsed)
    relation_asserted = [j for j in parsed if j.relation is not None]
    relation_scored = [j for j in relation_asserted if j.relation_ok is not None]
    loose, strict = _object_scores(parsed, strict=False), _object_scores(parsed, strict=True)
    n_images = len(all_judgements)
    return {
        "n_images": n_images,
        "n_parsed": len(parsed),
        "n_unparseable": len(unparseable),
        "unparseable_examples": [
            {"image_id": image_id, "caption": j.caption, "reason": j.reason}
            for image_id, j in unparseable[:max_examples]
        ],
        "exact_set_accuracy": _rate(sum(j.exact_set for j in all_judgements), n_images),
        "exact_set_accuracy_lenient": _rate(
            sum(j.exact_set_lenient for j in all_judgements), n_images
        ),
        "exact_set_accuracy_sized": _rate(
            sum(j.exact_set_sized for j in all_judgements), n_images
        ),
        "attribute_accuracy": {
            a: _rate(sum(getattr(n, a) == getattr(t, a) for n, t in pairs), len(pairs))
            for a in ATTRIBUTES
        },
        "n_matched_groups": len(pairs),
        "n_named_groups": n_named_groups,
        "n_true_groups": sum(len(j.true_groups) for j in parsed),
        "n_named_objects": loose["named"],
        "n_true_objects": loose["true"],
        "object_precision": loose["precision"],
        "object_recall": loose["recall"],
        "object_f1": loose["f1"],
        "object_precision_strict": strict["precision"],
        "object_recall_strict": strict["recall"],
        "object_f1_strict": strict["f1"],
        "hallucination_rate": _rate(sum(len(j.hallucinated) for j in parsed), n_named_groups),
        "hallucinated_caption_rate": _rate(sum(bool(j.hallucinated) for j in parsed), len(parsed)),
        "repetition_rate": _rate(sum(j.repeated for j in parsed), len(parsed)),
        "n_relation_asserted": len(relation_asserted),
        "n_relation_scored": len(relation_scored),
        "n_relation_exact": sum(j.relation_exact for j in relation_scored),
        "relation_accuracy": _rate(sum(bool(j.relation_ok) for j in relation_scored),
                                   len(relation_scored)),
        "relation_breakdown": {
            kind: sum(j.relation_kind == kind for j in relation_scored)
            for kind in RELATION_VERDICT_KINDS
        },
        "shape_confusion": {"labels": list(SHAPES),
                            "counts": confusion_counts(pairs, "shape", SHAPES)},
        "colour_confusion": {"labels": list(COLOURS),
                             "counts": confusion_counts(pairs, "colour", COLOURS)},
    }


def score_correctness(
    predictions: Mapping[int, str], truth: Mapping[int, SceneTruth], max_examples: int = 5
) -> dict[str, Any]:
    """Correctness metrics of generated captions on the shapes dataset.

    Args:
        predictions: Image id -> generated caption; every id must be in ``truth``.
        truth: Image id -> :class:`SceneTruth` (:func:`load_ground_truth`).
        max_examples: How many unparseable captions to quote in ``unparseable_examples``.

    Returns:
        A JSON-ready dict with the keys listed (and defined) in the module
        docstring: ``n_images``, ``n_parsed``, ``n_unparseable``,
        ``unparseable_examples``, ``exact_set_accuracy`` (strict) with
        ``exact_set_accuracy_lenient`` and ``exact_set_accuracy_sized``,
        ``attribute_accuracy``, ``object_precision/recall/f1(_strict)``,
        ``hallucination_rate``, ``hallucinated_caption_rate``,
        ``repetition_rate``, ``relation_accuracy`` (with
        ``n_relation_asserted``/``n_relation_scored``), ``shape_confusion``,
        ``colour_confusion`` and the counts behind the rates.

    Raises:
        ValueError: If ``predictions`` is empty or names an image ``truth`` lacks.
        TypeError: If a caption is not a string.
    """
    return summarise_judgements(judge_captions(predictions, truth), max_examples)
