"""Per-image CIDEr-D (corpus IDF) and the error kinds of a judged caption."""

from __future__ import annotations

import pytest

from ptlib.metrics import SceneTruth, TrueObject, judge_caption, score_captions
from ptlib.metrics.per_image import ERROR_KINDS, error_kinds, per_image_cider

REFERENCES = {
    1: ["a small red circle", "there is a small red circle", "a picture of a small red circle"],
    2: ["two large blue squares", "there are two large blue squares", "two large blue squares"],
    3: ["a small green star", "an image of a small green star", "a small green star"],
    4: ["a large yellow diamond", "a large yellow diamond on a noisy background",
        "there is a large yellow diamond"],
}


def test_per_image_cider_averages_to_the_corpus_score_and_keeps_order():
    predictions = {3: "a small green star", 1: "a small red square", 4: "a large yellow diamond",
                   2: "a small green star"}
    per_image = per_image_cider(REFERENCES, predictions)
    assert list(per_image) == [3, 1, 4, 2]
    corpus = score_captions(REFERENCES, predictions, metrics=("CIDEr",))["CIDEr-D"]
    assert sum(per_image.values()) / len(per_image) == pytest.approx(corpus, rel=1e-9)
    # a caption that copies a reference beats one naming another image's object
    assert per_image[3] > per_image[1] > 0.0
    assert per_image[2] == pytest.approx(0.0, abs=1e-6)


def test_per_image_cider_depends_on_the_scored_set():
    pair = {1: "a small red circle", 2: "two large blue squares"}
    alone = per_image_cider(REFERENCES, pair)
    together = per_image_cider(REFERENCES, {**pair, 3: "a small green star",
                                            4: "a large yellow diamond"})
    assert alone[1] != pytest.approx(together[1])  # the IDF comes from the scored references


def test_per_image_cider_refuses_a_single_image_and_unknown_ids():
    with pytest.raises(ValueError, match="at least 2 captions"):
        per_image_cider(REFERENCES, {1: "a small red circle"})
    with pytest.raises(ValueError, match="no references"):
        per_image_cider(REFERENCES, {1: "a small red circle", 9: "a star"})


def _object(shape: str, colour: str, size: str, centre: tuple[float, float]) -> TrueObject:
    x, y = centre
    return TrueObject(shape, colour, size, (x - 5, y - 5, 10, 10), centre)


SCENE = SceneTruth(
    image_id=1, width=100, height=100,
    objects=(
        _object("circle", "red", "small", (20, 20)),
        _object("star", "blue", "large", (75, 25)),
        _object("triangle", "green", "small", (20, 80)),
        _object("triangle", "green", "small", (50, 80)),
    ),
)
CORRECT = ("a small red circle, a large blue star and two small green triangles, "
           "the small red circle is to the left of the large blue star")


@pytest.mark.parametrize(
    ("caption", "kinds"),
    [
        (CORRECT, ()),
        ("a small red circle, a large blue star and two small green diamonds", ("wrong shape",)),
        ("a small red circle, a large blue star and two small purple triangles",
         ("wrong colour",)),
        ("a large red circle, a large blue star and two small green triangles", ("wrong size",)),
        ("a small red circle, a large blue star and three small green triangles",
         ("wrong count",)),
        ("a small red circle and a large blue star", ("missing object",)),
        ("a small red circle, a large blue star, two small green triangles "
         "and a small yellow square", ("hallucinated object",)),
        ("a small red circle, a large blue star, two small green triangles "
         "and a small red circle", ("repetition",)),
        (CORRECT.replace("to the left of", "to the right of"), ("false relation",)),
        ("a small red", ("unparseable",)),
        ("a small orange square and a large blue star", ("missing object", "hallucinated object")),
    ],
)
def test_error_kinds_name_each_mistake(caption, kinds):
    assert error_kinds(judge_caption(caption, SCENE)) == kinds


def test_error_kinds_come_in_the_documented_order():
    caption = "a large red circle and two large blue diamonds, the large red circle is above " \
              "the large blue diamonds"
    kinds = error_kinds(judge_caption(caption, SCENE))
    assert kinds == ("wrong shape", "wrong size", "wrong count", "missing object",
                     "false relation")
    assert list(kinds) == [k for k in ERROR_KINDS if k in kinds]
