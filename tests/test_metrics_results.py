"""COCO results files: the round trip, the metrics JSON beside them, bad input."""

from __future__ import annotations

import json
import math

import pytest

from ptlib.metrics import metrics_path_for, read_metrics, read_results, write_results


def test_write_results_round_trip(tmp_path):
    predictions = {42: "a red circle", 7: "two blue squares", 19: ""}
    metrics = {"BLEU-4": 0.25, "SPICE": None, "unavailable": {"SPICE": "offline"}, "n_images": 3}
    results_path, metrics_path = write_results(
        tmp_path / "eval" / "captions_val.json", predictions, metrics
    )

    assert metrics_path == tmp_path / "eval" / "captions_val.metrics.json"
    assert metrics_path_for(results_path) == metrics_path
    rows = json.loads(results_path.read_text())
    assert rows == [
        {"image_id": 7, "caption": "two blue squares"},
        {"image_id": 19, "caption": ""},
        {"image_id": 42, "caption": "a red circle"},
    ]
    assert read_results(results_path) == predictions
    assert read_metrics(results_path) == metrics
    assert sorted(p.name for p in results_path.parent.iterdir()) == [
        "captions_val.json",
        "captions_val.metrics.json",
    ]


def test_write_results_rejects_what_coco_cannot_read(tmp_path):
    with pytest.raises(TypeError, match="COCO image ids are ints"):
        write_results(tmp_path / "r.json", {"7": "a circle"}, {})
    with pytest.raises(TypeError, match=r"predictions\[7\] must be a str"):
        write_results(tmp_path / "r.json", {7: None}, {})
    with pytest.raises(ValueError, match="must end in .json"):
        write_results(tmp_path / "r.txt", {7: "a circle"}, {})
    with pytest.raises(ValueError, match=r"metrics\['CIDEr-D'\] is nan"):
        write_results(tmp_path / "r.json", {7: "a circle"}, {"CIDEr-D": math.nan})
    assert not (tmp_path / "r.json").exists()


def test_read_results_names_the_bad_entry(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps([{"image_id": 1, "caption": "x"}, {"image_id": 1, "caption": "y"}]))
    with pytest.raises(ValueError, match="image_id 1 appears twice"):
        read_results(path)
    path.write_text(json.dumps([{"image_id": "1", "caption": "x"}]))
    with pytest.raises(ValueError, match="entry 0 needs an int 'image_id'"):
        read_results(path)
