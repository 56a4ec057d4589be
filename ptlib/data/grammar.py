"""The caption grammar of the embedded shapes dataset, in one place.

Every reference caption of :mod:`ptlib.data.shapes` is produced by this module
and can be parsed back by :func:`parse_caption` into exactly what it asserts.

Vocabulary of the grammar
-------------------------
* shapes: ``circle square triangle star diamond``; plural always adds ``s``
  (``circles``, ``squares``, ``triangles``, ``stars``, ``diamonds``).
* colours: ``red green blue yellow purple orange``.
* sizes: ``small large``.
* counts: ``a`` (one object), ``two``, ``three``, ``four``.
* relations: ``to the left of``, ``to the right of``, ``above``, ``below``.

Noun phrases
------------
A *group* is a set of objects that share size, colour and shape. Objects that
share all three are always named together with a count, so no caption is
ambiguous about which object it means::

    indefinite:  COUNT SIZE COLOUR SHAPE[s]   "a small red circle",
                                              "two large blue stars"
    definite:    the SIZE COLOUR SHAPE[s]     "the small red circle",
                                              "the large blue stars"

Size is always named (the small/large distinction is part of the ground truth).

Templates
---------
``{list}`` names every group with an indefinite noun phrase (``"A"``, ``"A and
B"``, ``"A, B and C"``), in a random order. ``{a}``/``{b}`` are the subject and
object groups of one true relation, ``{rest}`` the groups the relation leaves
out, ``{be}`` is ``is``/``are`` agreeing with the following noun phrase.

One group (no relation is possible)::

    {list}
    there {be} {list}
    a picture of {list}
    an image of {list}
    {list} on a noisy background

Two or more groups (every caption names every group and one relation)::

    {list}, the {a} {be} {rel} the {b}
    there {be} {list} and the {a} {be} {rel} the {b}
    {a} {be} {rel} {b}[ and there {be} also {rest}]
    a picture of {list} with the {a} {rel} the {b}
    {a} {rel} {b}[, and {rest}]

The five references of an image use the five templates of its kind once each,
in a random order, with their own random list order and their own relation
(any true relation between any two groups; ``left of`` read from the other
side is ``right of``), so references differ in wording, order and direction.

Relations
---------
Image coordinates: x grows to the right, y grows downwards. For groups ``A`` and
``B`` and a margin ``m`` = :data:`RELATION_MARGIN` × image side, on box centres:

* ``A to the left of B``: every centre of ``A`` lies at least ``m`` left of
  every centre of ``B`` (``max x_A + m <= min x_B``);
* ``A to the right of B``: ``B to the left of A``;
* ``A above B``: ``max y_A + m <= min y_B``;
* ``A below B``: ``B above A``.

A relation is only ever stated when it holds for every member of both groups.

Which true relation a reference states is set by the dataset's
``relation_rule`` (:class:`ptlib.data.shapes.ShapesConfig`):

* ``"any"`` (the default, and every stored result): any true triple of any
  two groups, so a diagonal pair can be stated along either axis and the
  image -> relation mapping is one-to-many;
* ``"dominant"``: :func:`dominant_relations`, only along the axis on which the
  two groups are further apart (their *gap* on that axis, the distance
  between the facing extremes of their centres, is at least the margin and
  larger than the gap on the other axis), so each related pair has one
  stateable fact, written from either side.

Parsing rule
------------
:func:`parse_caption` reads the tokens (see :func:`ptlib.data.vocab.tokenize`)
left to right. A count word followed by size, colour and shape is an
indefinite noun phrase (a new group); ``the`` followed by size, colour, shape
refers to a group already named (or names it). A relation phrase between two
noun phrases relates the noun phrase just before it (subject) to the one just
after it (object). Every other word is filler (``there is are also and with of
picture image on noisy background an``), and so is ``a`` before a filler word
(``a picture of``, ``on a noisy background``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")
"""Shape names (COCO categories of the shapes dataset, ids 1..5 in this order)."""

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
"""Colour names."""

SIZES: tuple[str, ...] = ("small", "large")
"""Size names."""

COUNT_WORDS: dict[int, str] = {1: "a", 2: "two", 3: "three", 4: "four"}
"""The word that names how many objects a group has."""

RELATIONS: tuple[str, ...] = ("left_of", "right_of", "above", "below")
"""Canonical relation names."""

RELATION_PHRASES: dict[str, str] = {
    "left_of": "to the left of",
    "right_of": "to the right of",
    "above": "above",
    "below": "below",
}
"""How a relation is written in a caption."""

INVERSE_RELATION: dict[str, str] = {
    "left_of": "right_of",
    "right_of": "left_of",
    "above": "below",
    "below": "above",
}

RELATION_MARGIN: float = 0.08
"""Centres must be this fraction of the image side apart for a relation to hold."""

FILLER_WORDS: frozenset[str] = frozenset(
    "there is are also and with of picture image on noisy background an".split()
)
"""Words a caption may contain that assert nothing."""

SINGLE_GROUP_TEMPLATES: tuple[str, ...] = (
    "{list}",
    "there {be_list} {list}",
    "a picture of {list}",
    "an image of {list}",
    "{list} on a noisy background",
)
RELATION_TEMPLATES: tuple[str, ...] = (
    "{list}, {the_a} {be_a} {rel} {the_b}",
    "there {be_list} {list} and {the_a} {be_a} {rel} {the_b}",
    "{np_a} {be_a} {rel} {np_b}{rest_there}",
    "a picture of {list} with {the_a} {rel} {the_b}",
    "{np_a} {rel} {np_b}{rest_comma}",
)


@dataclass(frozen=True)
class Group:
    """Objects that share size, colour and shape, named together with a count."""

    count: int
    size: str
    colour: str
    shape: str

    @property
    def kind(self) -> tuple[str, str, str]:
        """``(size, colour, shape)``: what the group's objects look like."""
        return (self.size, self.colour, self.shape)


@dataclass(frozen=True)
class Relation:
    """``groups[subject] <relation> groups[object]`` in a caption's group list."""

    subject: int
    relation: str
    object: int


@dataclass(frozen=True)
class CaptionMeaning:
    """What a caption asserts: its groups (in order of mention) and at most one relation."""

    groups: tuple[Group, ...]
    relation: Relation | None

    def to_json(self) -> dict:
        """A JSON-ready dict (stored with each reference caption)."""
        return {
            "objects": [
                {"count": g.count, "size": g.size, "colour": g.colour, "shape": g.shape}
                for g in self.groups
            ],
            "relation": None
            if self.relation is None
            else {
                "subject": self.relation.subject,
                "relation": self.relation.relation,
                "object": self.relation.object,
            },
        }


def plural(shape: str) -> str:
    """The plural of a shape name: always ``shape + "s"``."""
    return shape + "s"


def noun_phrase(group: Group, definite: bool = False) -> str:
    """``"two small red circles"`` (indefinite) or ``"the small red circles"`` (definite)."""
    noun = group.shape if group.count == 1 else plural(group.shape)
    head = "the" if definite else COUNT_WORDS[group.count]
    return f"{head} {group.size} {group.colour} {noun}"


def _be(group: Group) -> str:
    return "is" if group.count == 1 else "are"


def _join(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def relation_holds(
    relation: str,
    subject_centres: Sequence[tuple[float, float]],
    object_centres: Sequence[tuple[float, float]],
    image_size: float,
) -> bool:
    """Whether ``subject <relation> object`` holds for every pair of centres.

    Args:
        relation: One of :data:`RELATIONS`.
        subject_centres: ``(x, y)`` box centres of the subject group's objects.
        object_centres: ``(x, y)`` box centres of the object group's objects.
        image_size: The image side in pixels (the margin scales with it).
    """
    margin = RELATION_MARGIN * image_size
    if relation == "left_of":
        return max(x for x, _ in subject_centres) + margin <= min(x for x, _ in object_centres)
    if relation == "right_of":
        return relation_holds("left_of", object_centres, subject_centres, image_size)
    if relation == "above":
        return max(y for _, y in subject_centres) + margin <= min(y for _, y in object_centres)
    if relation == "below":
        return relation_holds("above", object_centres, subject_centres, image_size)
    raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")


def true_relations(
    centres: Sequence[Sequence[tuple[float, float]]], image_size: float
) -> list[tuple[int, str, int]]:
    """Every ``(subject, relation, object)`` that holds between two different groups.

    Args:
        centres: For each group, the centres of its objects.
        image_size: The image side in pixels.
    """
    found = []
    for a in range(len(centres)):
        for b in range(len(centres)):
            if a == b:
                continue
            for relation in RELATIONS:
                if relation_holds(relation, centres[a], centres[b], image_size):
                    found.append((a, relation, b))
    return found


RELATION_RULES: tuple[str, ...] = ("any", "dominant")
"""How a reference picks its relation (see the module docstring)."""


def axis_gap(
    a_centres: Sequence[tuple[float, float]],
    b_centres: Sequence[tuple[float, float]],
    axis: int,
) -> float:
    """How far apart two groups are along one axis (negative when they overlap on it).

    Args:
        a_centres: ``(x, y)`` centres of one group's objects.
        b_centres: ``(x, y)`` centres of the other group's objects.
        axis: 0 for x (left/right), 1 for y (above/below).

    Returns:
        ``max(min b - max a, min a - max b)`` on that axis: a relation along it
        holds (one way) exactly when this is at least the margin.
    """
    a = [c[axis] for c in a_centres]
    b = [c[axis] for c in b_centres]
    return max(min(b) - max(a), min(a) - max(b))


def dominant_relations(
    centres: Sequence[Sequence[tuple[float, float]]], image_size: float
) -> list[tuple[int, str, int]]:
    """The true relations along each pair's dominant axis (``relation_rule="dominant"``).

    A triple of :func:`true_relations` is kept when the gap (:func:`axis_gap`)
    on its axis is strictly larger than the gap on the other axis; a pair whose
    two gaps are equal states nothing.

    Args:
        centres: For each group, the centres of its objects.
        image_size: The image side in pixels.
    """
    kept = []
    for a, relation, b in true_relations(centres, image_size):
        axis = 0 if relation in ("left_of", "right_of") else 1
        if axis_gap(centres[a], centres[b], axis) > axis_gap(centres[a], centres[b], 1 - axis):
            kept.append((a, relation, b))
    return kept


def write_caption(
    groups: Sequence[Group],
    relations: Sequence[tuple[int, str, int]],
    template: str,
    rng: np.random.Generator,
) -> tuple[str, CaptionMeaning]:
    """Fill one template for one image.

    Args:
        groups: The image's groups.
        relations: The true relations between them (:func:`true_relations`);
            must be non-empty when there are two or more groups.
        template: One of ``SINGLE_GROUP_TEMPLATES`` / ``RELATION_TEMPLATES``.
        rng: Chooses the list order and the relation.

    Returns:
        The caption and what it asserts (groups in order of first mention).
    """
    order = [int(i) for i in rng.permutation(len(groups))]
    fields: dict[str, str] = {}
    relation: tuple[int, str, int] | None = None
    if len(groups) > 1:
        if not relations:
            raise ValueError("an image with two or more groups needs a true relation")
        relation = relations[int(rng.integers(len(relations)))]
        a, rel, b = relation
        rest = [i for i in order if i not in (a, b)]
        rest_list = _join([noun_phrase(groups[i]) for i in rest]) if rest else ""
        fields.update(
            np_a=noun_phrase(groups[a]),
            np_b=noun_phrase(groups[b]),
            the_a=noun_phrase(groups[a], definite=True),
            the_b=noun_phrase(groups[b], definite=True),
            be_a=_be(groups[a]),
            rel=RELATION_PHRASES[rel],
            rest_there=f" and there {_be(groups[rest[0]])} also {rest_list}" if rest else "",
            rest_comma=f", and {rest_list}" if rest else "",
        )
    fields.update(list=_join([noun_phrase(groups[i]) for i in order]), be_list=_be(groups[order[0]]))
    caption = template.format(**fields)
    meaning = parse_caption(caption)
    return caption, meaning


class CaptionParseError(ValueError):
    """A caption that does not follow the shapes grammar."""


def parse_caption(caption: str) -> CaptionMeaning:
    """Read back what a caption of this grammar asserts (see the module docstring).

    Args:
        caption: A caption in the shapes grammar (any case and punctuation).

    Returns:
        The groups in order of first mention and the relation (indices into
        those groups), or ``relation=None``. A definite noun phrase naming a
        group not mentioned before (possible in generated text, never in the
        references) adds that group with count 1, or 2 when plural.

    Raises:
        CaptionParseError: If a word is outside the grammar, a noun phrase is
            incomplete, or more than one relation is stated.
    """
    from ptlib.data.vocab import tokenize

    tokens = tokenize(caption)
    count_of = {word: n for n, word in COUNT_WORDS.items()}
    relation_words = {phrase: name for name, phrase in RELATION_PHRASES.items()}
    groups: list[Group] = []
    mentions: list[int] = []  # group index of each noun phrase, in order
    pending_relation: tuple[int, str] | None = None
    relation: Relation | None = None
    i = 0
    while i < len(tokens):
        word = tokens[i]
        matched = next(
            (p for p in relation_words if tokens[i : i + len(p.split())] == p.split()), None
        )
        if matched is not None:
            if not mentions or pending_relation is not None or relation is not None:
                raise CaptionParseError(f"unexpected relation {matched!r} in {caption!r}")
            pending_relation = (mentions[-1], relation_words[matched])
            i += len(matched.split())
            continue
        if word in count_of or word == "the":
            if word == "a" and tokens[i + 1 : i + 2] and tokens[i + 1] in FILLER_WORDS:
                i += 1
                continue
            size, colour, noun = (tokens[i + 1 : i + 4] + ["", "", ""])[:3]
            shape = noun[:-1] if noun.endswith("s") and noun[:-1] in SHAPES else noun
            if size not in SIZES or colour not in COLOURS or shape not in SHAPES:
                raise CaptionParseError(
                    f"incomplete noun phrase {' '.join(tokens[i : i + 4])!r} in {caption!r}"
                )
            plural_form = noun != shape
            if word == "the":
                matches = [k for k, g in enumerate(groups) if g.kind == (size, colour, shape)]
                if matches:
                    index = matches[0]
                else:
                    groups.append(Group(1 if not plural_form else 2, size, colour, shape))
                    index = len(groups) - 1
            else:
                count = count_of[word]
                if (count > 1) != plural_form:
                    raise CaptionParseError(f"count {word!r} disagrees with {noun!r} in {caption!r}")
                groups.append(Group(count, size, colour, shape))
                index = len(groups) - 1
            mentions.append(index)
            if pending_relation is not None:
                relation = Relation(pending_relation[0], pending_relation[1], index)
                pending_relation = None
            i += 4
            continue
        if word not in FILLER_WORDS:
            raise CaptionParseError(f"word {word!r} is not in the shapes grammar ({caption!r})")
        i += 1
    if pending_relation is not None:
        raise CaptionParseError(f"relation without an object in {caption!r}")
    return CaptionMeaning(tuple(groups), relation)
