"""Caption correctness on the shapes dataset: parser round trip, matching, every metric."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from ptlib.data.annotations import AnnotationError
from ptlib.data.grammar import COLOURS, SHAPES, Group, Relation
from ptlib.data.shapes import ShapesConfig, generate_shapes_dataset, shapes_paths
from ptlib.metrics import (
    SceneTruth,
    TrueObject,
    colour_confusion_matrix,
    judge_caption,
    load_ground_truth,
    match_groups,
    parse_model_caption,
    relation_groups,
    relation_verdict_kind,
    score_correctness,
    shape_confusion_matrix,
)

# --------------------------------------------------------------------------- a generated split


@pytest.fixture(scope="module")
def shapes_split(tmp_path_factory):
    """200 test images at 64 px: (truth, captions json annotations)."""
    root = tmp_path_factory.mktemp("shapes")
    config = ShapesConfig(img_size=64, n_train=1, n_val=0, n_test=200, n_compositional=0)
    generate_shapes_dataset(root, config)
    _, captions_json, instances_json = shapes_paths(root, "test")
    annotations = json.loads(captions_json.read_text())["annotations"]
    return load_ground_truth(instances_json), annotations


def test_every_reference_parses_back_to_its_stored_meaning_and_the_image(shapes_split):
    truth, annotations = shapes_split
    assert len(truth) == 200 and len(annotations) == 5 * 200
    for ann in annotations:
        parsed = parse_model_caption(ann["caption"])
        assert parsed.parsed, (ann["caption"], parsed.reason)
        stored = tuple(Group(**o) for o in ann["objects"])
        assert parsed.groups == stored
        relation = None if ann["relation"] is None else Relation(**ann["relation"])
        assert parsed.relation == relation
        assert sorted(g.kind + (g.count,) for g in parsed.groups) == sorted(
            g.kind + (g.count,) for g in truth[ann["image_id"]].groups
        )


def test_references_score_perfectly(shapes_split):
    truth, annotations = shapes_split
    references = defaultdict(list)
    for ann in annotations:
        references[ann["image_id"]].append(ann["caption"])
    multi_group = sum(len(t.groups) > 1 for t in truth.values())
    assert 0 < multi_group < len(truth)  # both caption kinds are exercised
    for k in range(5):
        result = score_correctness({i: refs[k] for i, refs in references.items()}, truth)
        assert result["n_images"] == result["n_parsed"] == 200
        assert result["n_unparseable"] == 0 and result["unparseable_examples"] == []
        assert result["exact_set_accuracy"] == result["exact_set_accuracy_lenient"] == 1.0
        assert result["exact_set_accuracy_sized"] == 1.0
        assert result["attribute_accuracy"] == {"colour": 1.0, "size": 1.0, "shape": 1.0,
                                                "count": 1.0}
        assert result["n_matched_groups"] == result["n_true_groups"] == result["n_named_groups"]
        for key in ("object_precision", "object_recall", "object_f1", "object_f1_strict"):
            assert result[key] == 1.0
        assert result["hallucination_rate"] == result["repetition_rate"] == 0.0
        assert result["n_relation_asserted"] == result["n_relation_scored"] == multi_group
        assert result["relation_accuracy"] == 1.0
        shapes, counts = shape_confusion_matrix(result)
        assert shapes == list(SHAPES)
        assert counts.sum() == np.trace(counts) == result["n_true_groups"]
        json.dumps(result, allow_nan=False)


# --------------------------------------------------------------------------- a hand-made scene


def _object(shape: str, colour: str, size: str, centre: tuple[float, float]) -> TrueObject:
    side = 18.0 if size == "small" else 32.0
    bbox = (centre[0] - side / 2, centre[1] - side / 2, side, side)
    return TrueObject(shape, colour, size, bbox, centre)


# 100 px, margin 8 px: the circle is left of the star and above the triangles.
SCENE = SceneTruth(
    image_id=1,
    width=100,
    height=100,
    objects=(
        _object("circle", "red", "small", (20, 20)),
        _object("star", "blue", "large", (75, 25)),
        _object("triangle", "green", "small", (20, 80)),
        _object("triangle", "green", "small", (50, 80)),
    ),
)
CORRECT = ("a small red circle, a large blue star and two small green triangles, "
           "the small red circle is to the left of the large blue star")


def _score(caption: str) -> dict:
    return score_correctness({1: caption}, {1: SCENE})


def test_scene_truth_groups():
    assert SCENE.groups == (
        Group(1, "small", "red", "circle"),
        Group(1, "large", "blue", "star"),
        Group(2, "small", "green", "triangle"),
    )
    assert SCENE.group_centres[2] == ((20, 80), (50, 80))


def test_correct_caption_is_perfect():
    judgement = judge_caption(CORRECT, SCENE)
    assert judgement.exact_set and judgement.exact_set_sized and judgement.relation_ok is True
    assert judgement.exact_set_lenient and judgement.relation_exact
    assert judgement.relation_kind == "holds"
    assert judgement.missing == judgement.extra == {} and judgement.hallucinated == ()
    result = _score(CORRECT)
    assert result["exact_set_accuracy"] == 1.0 and result["relation_accuracy"] == 1.0
    assert result["object_f1"] == 1.0 and result["hallucination_rate"] == 0.0


def test_swapped_shape():
    caption = "a small red circle, a large blue star and two small green diamonds"
    result = _score(caption)
    assert result["exact_set_accuracy"] == 0.0
    assert result["attribute_accuracy"] == {"colour": 1.0, "size": 1.0, "shape": 2 / 3,
                                            "count": 1.0}
    assert result["object_precision"] == result["object_recall"] == 0.5
    assert result["hallucination_rate"] == pytest.approx(1 / 3)
    assert result["hallucinated_caption_rate"] == 1.0
    _, counts = shape_confusion_matrix(result)
    triangle, diamond = SHAPES.index("triangle"), SHAPES.index("diamond")
    assert counts[triangle, diamond] == 1 and counts.sum() == 3 and np.trace(counts) == 2
    judgement = judge_caption(caption, SCENE)
    assert judgement.missing == {("green", "triangle"): 2}
    assert judgement.extra == {("green", "diamond"): 2}


def test_swapped_colour():
    result = _score("a small red circle, a large blue star and two small purple triangles")
    assert result["exact_set_accuracy"] == 0.0
    assert result["attribute_accuracy"]["colour"] == pytest.approx(2 / 3)
    assert result["attribute_accuracy"]["shape"] == 1.0
    assert result["hallucination_rate"] == pytest.approx(1 / 3)
    colours, counts = colour_confusion_matrix(result)
    assert colours == list(COLOURS)
    assert counts[COLOURS.index("green"), COLOURS.index("purple")] == 1
    _, shape_counts = shape_confusion_matrix(result)
    assert np.trace(shape_counts) == shape_counts.sum() == 3


def test_dropped_object():
    caption = "a small red circle and a large blue star"
    result = _score(caption)
    assert result["exact_set_accuracy"] == 0.0
    assert result["object_precision"] == 1.0 and result["object_recall"] == 0.5
    assert result["hallucination_rate"] == 0.0
    assert result["n_matched_groups"] == 2 and result["attribute_accuracy"]["shape"] == 1.0
    assert judge_caption(caption, SCENE).missing == {("green", "triangle"): 2}


def test_added_object():
    caption = ("a small red circle, a large blue star, two small green triangles "
               "and a small yellow square")
    result = _score(caption)
    assert result["exact_set_accuracy"] == 0.0
    assert result["object_precision"] == 0.8 and result["object_recall"] == 1.0
    assert result["hallucination_rate"] == 0.25 and result["repetition_rate"] == 0.0
    judgement = judge_caption(caption, SCENE)
    assert judgement.hallucinated == (Group(1, "small", "yellow", "square"),)
    assert judgement.extra == {("yellow", "square"): 1} and judgement.missing == {}


def test_repeated_object():
    caption = ("a small red circle, a large blue star, two small green triangles "
               "and a small red circle")
    result = _score(caption)
    assert result["repetition_rate"] == 1.0
    assert result["exact_set_accuracy"] == 0.0
    assert result["hallucination_rate"] == 0.0  # the red circle is there: named too often
    assert result["object_precision"] == 0.8 and result["object_recall"] == 1.0
    assert result["n_named_groups"] == 4 and result["n_matched_groups"] == 3
    judgement = judge_caption(caption, SCENE)
    assert judgement.repeated and judgement.extra == {("red", "circle"): 1}


def test_wrong_count():
    result = _score("a small red circle, a large blue star and three small green triangles")
    assert result["exact_set_accuracy"] == 0.0
    assert result["attribute_accuracy"] == {"colour": 1.0, "size": 1.0, "shape": 1.0,
                                            "count": 2 / 3}
    assert result["object_precision"] == 0.8 and result["object_recall"] == 1.0
    assert result["hallucination_rate"] == 0.0


def test_wrong_size_is_exact_but_not_sized():
    result = _score("a large red circle, a large blue star and two small green triangles")
    assert result["exact_set_accuracy"] == 1.0 and result["exact_set_accuracy_sized"] == 0.0
    assert result["attribute_accuracy"]["size"] == pytest.approx(2 / 3)
    assert result["object_precision"] == 1.0 and result["object_precision_strict"] == 0.75


def test_false_relation():
    caption = CORRECT.replace("to the left of", "to the right of")
    result = _score(caption)
    assert result["exact_set_accuracy"] == 1.0
    assert result["n_relation_asserted"] == result["n_relation_scored"] == 1
    assert result["relation_accuracy"] == 0.0
    assert result["relation_breakdown"] == {"holds": 0, "opposite": 1, "other_axis": 0,
                                            "none": 0, "self": 0}
    # the circle is level with the star (left of it): "above" is the other axis
    above = _score(caption.replace("to the right of", "above"))
    assert above["relation_accuracy"] == 0.0 and above["relation_breakdown"]["other_axis"] == 1
    # plural subject: every triangle must be left of the star (50 + 8 <= 75)
    assert _score("two small green triangles are to the left of a large blue star")[
        "relation_accuracy"] == 1.0


def test_relation_with_unmatched_subject_is_counted_not_scored():
    judgement = judge_caption("a small yellow square is above two small green triangles", SCENE)
    assert judgement.relation_ok is None and "subject" in judgement.relation_note
    result = _score("a small yellow square is above two small green triangles")
    assert result["n_relation_asserted"] == 1 and result["n_relation_scored"] == 0
    assert result["relation_accuracy"] is None


@pytest.mark.parametrize(
    ("caption", "reason"),
    [
        ("banana banana", "banana"),
        ("", "empty caption"),
        ("there is a picture of", "names no object"),
        ("a small red", "incomplete noun phrase"),
        ("two small red circle", "disagrees"),
        ("a small red circle is <unk> a large blue star", "unk"),
    ],
)
def test_unparseable_is_counted_with_its_reason(caption, reason):
    parsed = parse_model_caption(caption)
    assert not parsed.parsed and reason in parsed.reason
    result = _score(caption)
    assert result["n_unparseable"] == 1 and result["n_parsed"] == 0
    assert result["unparseable_examples"] == [{"image_id": 1, "caption": caption,
                                               "reason": parsed.reason}]
    assert result["exact_set_accuracy"] == 0.0
    assert result["object_precision"] is None and result["attribute_accuracy"]["shape"] is None
    judgement = judge_caption(caption, SCENE)
    assert judgement.missing == {("red", "circle"): 1, ("blue", "star"): 1,
                                 ("green", "triangle"): 2}


def test_unparseable_counts_as_wrong_only_for_exact_set():
    truth = {i: SceneTruth(i, SCENE.width, SCENE.height, SCENE.objects) for i in range(4)}
    predictions = {
        0: CORRECT,
        1: "a small red circle, a large blue star and two small green diamonds",
        2: "banana",
        3: "gibberish words",
    }
    result = score_correctness(predictions, truth, max_examples=1)
    assert result["n_images"] == 4 and result["n_parsed"] == 2 and result["n_unparseable"] == 2
    assert len(result["unparseable_examples"]) == 1
    assert result["exact_set_accuracy"] == 0.25
    assert result["n_matched_groups"] == 6
    assert result["attribute_accuracy"]["shape"] == pytest.approx(5 / 6)
    assert result["object_recall"] == pytest.approx(6 / 8)


# --------------------------------------------------------------------------- matching rule


def test_matching_is_optimal_not_greedy():
    true = [Group(2, "small", "red", "circle"), Group(1, "small", "red", "square")]
    named = [Group(1, "small", "red", "circle"), Group(2, "large", "blue", "circle")]
    # greedy would give named[0] the circles (3 agreeing) and leave named[1] unmatched;
    # the optimum (3 + 2 agreeing) pairs named[0] with the square.
    assert match_groups(named, true) == ((0, 1), (1, 0))


def test_matching_needs_a_shared_colour_or_shape():
    true = [Group(1, "small", "green", "triangle")]
    assert match_groups([Group(1, "small", "red", "star")], true) == ()
    assert match_groups([Group(1, "large", "red", "triangle")], true) == ((0, 0),)


def test_matching_ties_prefer_colour_then_shape():
    true = [Group(1, "small", "green", "triangle"), Group(1, "large", "green", "diamond")]
    # both pairs agree on 3 attributes and on colour; the shared shape decides
    assert match_groups([Group(1, "small", "green", "diamond")], true) == ((0, 1),)
    true = [Group(1, "small", "red", "diamond"), Group(1, "small", "green", "star")]
    # 3 agreeing each; the shared colour wins over the shared shape
    assert match_groups([Group(1, "small", "green", "diamond")], true) == ((0, 1),)


def test_shape_confusion_counts_hand_made():
    truth = {i: SceneTruth(i, SCENE.width, SCENE.height, SCENE.objects) for i in range(3)}
    predictions = {
        0: "a small red square, a large blue star and two small green diamonds",
        1: "a small red circle, a large blue diamond and two small green diamonds",
        2: "a small red circle and a large yellow star",
    }
    shapes, counts = shape_confusion_matrix(score_correctness(predictions, truth))
    expected = np.zeros((5, 5), dtype=np.int64)
    c, sq, tr, st, di = (SHAPES.index(s) for s in ("circle", "square", "triangle", "star",
                                                   "diamond"))
    expected[c, sq] += 1
    expected[st, st] += 1
    expected[tr, di] += 2
    expected[c, c] += 2
    expected[st, di] += 1
    expected[st, st] += 1  # yellow star matched to the blue star by shape
    assert shapes == list(SHAPES)
    np.testing.assert_array_equal(counts, expected)


def test_confusion_matrix_reads_a_result_back_from_json():
    result = json.loads(json.dumps(_score(CORRECT)))
    shapes, counts = shape_confusion_matrix(result["shape_confusion"])
    assert counts.dtype == np.int64 and counts.shape == (len(SHAPES), len(SHAPES))
    with pytest.raises(ValueError, match="shape_confusion"):
        shape_confusion_matrix({"n_images": 1})
    with pytest.raises(ValueError, match="expected"):
        shape_confusion_matrix({"shape_confusion": {"labels": ["a"], "counts": [[1, 2]]}})


# --------------------------------------------------------------------------- bad input


def test_bad_predictions_are_named():
    with pytest.raises(ValueError, match="empty"):
        score_correctness({}, {1: SCENE})
    with pytest.raises(ValueError, match=r"not in the ground truth.*\[7\]"):
        score_correctness({7: CORRECT}, {1: SCENE})
    with pytest.raises(TypeError, match=r"predictions\[1\]"):
        score_correctness({1: None}, {1: SCENE})


def test_bad_instances_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="instances_val.json"):
        load_ground_truth(tmp_path / "instances_val.json")
    ann = {"id": 1, "image_id": 1, "bbox": [1, 2, 3, 4], "shape": "hexagon", "colour": "red",
           "size": "small"}
    data = {"images": [{"id": 1, "width": 64, "height": 64}], "annotations": [ann]}
    path = tmp_path / "instances_test.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"instances_test.json: annotations\[0\]\['shape'\]"):
        load_ground_truth(path)
    ann["shape"] = "circle"
    path.write_text(json.dumps(data))
    truth = load_ground_truth(path)
    assert truth[1].objects[0].centre == (2.5, 4.0)  # from the bbox when 'centre' is absent
    ann["image_id"] = 9
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match="image_id 9"):
        load_ground_truth(path)


# --------------------------------------------------------------------------- strict exact set


TWO_CIRCLES = SceneTruth(
    image_id=2, width=100, height=100,
    objects=(
        _object("circle", "red", "large", (20, 30)),
        _object("circle", "red", "large", (20, 70)),
        _object("star", "blue", "large", (75, 50)),
    ),
)


def test_naming_a_kind_twice_earns_only_lenient_credit():
    repeated = ("a large red circle is to the left of a large blue star "
                "and there is also a large red circle")
    judgement = judge_caption(repeated, TWO_CIRCLES)
    assert judgement.repeated and judgement.exact_set_lenient
    assert not judgement.exact_set and not judgement.exact_set_sized
    once = "two large red circles are to the left of a large blue star"
    assert judge_caption(once, TWO_CIRCLES).exact_set
    result = score_correctness({1: repeated, 2: once}, {1: TWO_CIRCLES, 2: TWO_CIRCLES})
    assert result["exact_set_accuracy"] == 0.5
    assert result["exact_set_accuracy_lenient"] == 1.0
    assert result["exact_set_accuracy_sized"] == 0.5


# --------------------------------------------------------------------------- relation objects


def test_relation_is_judged_on_the_named_kind_not_a_substitute_false_to_true():
    # The matching pairs the first "large purple circle" with the small red circle (the
    # repeated kind can take the true purple circle only once); the relation is about a
    # large purple circle, which exists, and it is right of the green circle.
    scene = SceneTruth(
        image_id=3, width=100, height=100,
        objects=(
            _object("circle", "green", "large", (40, 50)),
            _object("circle", "red", "small", (10, 50)),
            _object("circle", "purple", "large", (80, 50)),
        ),
    )
    caption = ("a large purple circle is to the right of a large green circle "
               "and there is also a large purple circle")
    judgement = judge_caption(caption, scene)
    matched = dict(judgement.matches)
    assert scene.groups[matched[0]].colour == "red"  # the substitute the old rule judged on
    assert judgement.relation_ok is True and judgement.relation_exact
    assert relation_groups(judgement.relation, judgement.named, judgement.matches,
                           scene.groups) == (2, 0, True)


def test_relation_is_judged_on_the_named_kind_not_a_substitute_true_to_false():
    # "the large green triangle" is the image's pair of green triangles (left), but the
    # matching gives the singular named triangle to the green star (right of the circle).
    scene = SceneTruth(
        image_id=4, width=100, height=100,
        objects=(
            _object("circle", "blue", "large", (50, 50)),
            _object("star", "green", "large", (88, 50)),
            _object("triangle", "green", "large", (15, 20)),
            _object("triangle", "green", "large", (15, 80)),
        ),
    )
    caption = ("a picture of a large green triangle a large blue circle and two large "
               "green triangles with the large green triangle to the right of the large "
               "blue circle")
    judgement = judge_caption(caption, scene)
    assert scene.groups[dict(judgement.matches)[0]].shape == "star"
    assert judgement.relation_ok is False and judgement.relation_kind == "opposite"


def test_relation_falls_back_to_the_matched_group_and_a_group_never_relates_to_itself():
    # wrong size: no exact "large red circle", so the matched small red circle is used
    fallback = judge_caption("a large red circle is to the left of a large blue star", SCENE)
    assert fallback.relation_ok is True and not fallback.relation_exact
    self_relation = judge_caption(
        "a large red circle is above a large red circle and there is also a large blue star",
        TWO_CIRCLES,
    )
    assert self_relation.relation_ok is False and self_relation.relation_kind == "self"


@pytest.mark.parametrize(
    ("relation", "subject", "obj", "kind"),
    [
        ("left_of", (10, 50), (50, 50), "holds"),
        ("right_of", (10, 50), (50, 50), "opposite"),
        ("above", (10, 50), (50, 50), "other_axis"),
        ("above", (10, 10), (50, 50), "holds"),
        ("below", (10, 10), (50, 50), "opposite"),
        ("above", (10, 50), (14, 52), "none"),
        ("left_of", (50, 10), (52, 60), "other_axis"),
    ],
)
def test_relation_verdict_kind(relation, subject, obj, kind):
    assert relation_verdict_kind(relation, [subject], [obj], 100) == kind


def test_relation_verdict_kind_rejects_an_unknown_relation():
    with pytest.raises(ValueError, match="relation must be one of"):
        relation_verdict_kind("near", [(0, 0)], [(1, 1)], 100)
