"""The data flag ``relation_rule``: the default dataset is unchanged, ``dominant`` states one axis."""

from __future__ import annotations

import json

import pytest

from ptlib.data.grammar import RELATION_MARGIN, axis_gap, dominant_relations, true_relations
from ptlib.data.shapes import ShapesConfig, generate_shapes_dataset, shapes_paths
from ptlib.metrics import load_ground_truth


def test_the_default_rule_keeps_the_dataset_key_of_the_stored_results():
    # results/cpu were trained on shapes-96px-6000-57dc70af; a new field must not move it
    assert ShapesConfig().key() == "shapes-96px-6000-57dc70af"
    assert "relation_rule" not in ShapesConfig().as_dict()
    assert ShapesConfig(relation_rule="dominant").key() != ShapesConfig().key()
    with pytest.raises(ValueError, match="relation_rule must be one of"):
        ShapesConfig(relation_rule="nearest")


def test_dominant_relations_keep_only_the_axis_with_the_larger_gap():
    side = 100.0
    diagonal = [[(10.0, 10.0)], [(50.0, 30.0)]]  # 40 apart in x, 20 in y: both axes hold
    assert {r for _, r, _ in true_relations(diagonal, side)} == {
        "left_of", "right_of", "above", "below"}
    assert dominant_relations(diagonal, side) == [(0, "left_of", 1), (1, "right_of", 0)]
    tall = [[(10.0, 10.0)], [(30.0, 60.0)]]
    assert dominant_relations(tall, side) == [(0, "above", 1), (1, "below", 0)]
    even = [[(10.0, 10.0)], [(40.0, 40.0)]]  # equal gaps: the pair states nothing
    assert dominant_relations(even, side) == []
    assert axis_gap([(10.0, 0.0), (20.0, 0.0)], [(35.0, 0.0)], 0) == 15.0


def test_a_dominant_dataset_states_each_pair_along_one_axis(tmp_path):
    config = ShapesConfig(img_size=64, n_train=1, n_val=0, n_test=80, n_compositional=0,
                          relation_rule="dominant")
    generate_shapes_dataset(tmp_path, config)
    _, captions_json, instances_json = shapes_paths(tmp_path, "test")
    truth = load_ground_truth(instances_json)
    annotations = json.loads(captions_json.read_text())["annotations"]
    stated = 0
    for ann in annotations:
        relation = ann["relation"]
        scene = truth[ann["image_id"]]
        assert (relation is None) == (len(scene.groups) == 1)
        if relation is None:
            continue
        kinds = [tuple(scene_group.kind) for scene_group in scene.groups]
        objects = ann["objects"]
        subject = kinds.index((objects[relation["subject"]]["size"],
                               objects[relation["subject"]]["colour"],
                               objects[relation["subject"]]["shape"]))
        obj = kinds.index((objects[relation["object"]]["size"],
                           objects[relation["object"]]["colour"],
                           objects[relation["object"]]["shape"]))
        a, b = scene.group_centres[subject], scene.group_centres[obj]
        axis = 0 if relation["relation"] in ("left_of", "right_of") else 1
        assert axis_gap(a, b, axis) >= RELATION_MARGIN * 64
        assert axis_gap(a, b, axis) > axis_gap(a, b, 1 - axis)
        stated += 1
    assert stated > 50
