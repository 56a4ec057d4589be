"""Stored course experiments: trained once, then loaded with the same numbers."""

from __future__ import annotations

import json

import pytest

from ptlib import course
from ptlib.cli import main
from ptlib.experiments import config_name, trained_captioner


def test_config_names_per_profile():
    assert config_name("vit", course.get_profile("ci")) == "shapes_vit_ci"
    assert config_name("convnext", course.get_profile("cpu")) == "shapes_convnext"
    assert config_name("vit", course.get_profile("gpu")) == "shapes_vit_gpu"
    coco = course.get_profile("coco", check_data=False)
    assert config_name("vit", coco) == "shapes_vit_gpu"  # chapters 5-9: the embedded data
    assert config_name("vit", coco, dataset="coco") == "coco_vit_b16"
    assert config_name("convnext", coco, dataset="coco") == "coco_convnext_t"
    with pytest.raises(ValueError, match="coco_runs"):
        config_name("vit", course.get_profile("gpu"), dataset="coco")
    with pytest.raises(ValueError, match="backbone"):
        config_name("resnet", course.get_profile("ci"))


def test_trained_captioner_runs_once_then_loads(isolated_dirs, monkeypatch):
    first = trained_captioner("convnext", "ci", overrides=["train.epochs=1"], splits=("test",))
    assert first.checkpoint.is_file() and len(first.history) == 1
    test = first.evaluation["test"]
    assert {"BLEU-4", "CIDEr-D", "folds", "correctness", "captions"} <= set(test)
    assert set(test["folds"]) == {"model", "floor", "ceiling", "of_ceiling"}

    def no_training(*args, **kwargs):
        raise AssertionError("a stored result must be loaded, not retrained")

    monkeypatch.setattr("ptlib.experiments.captioners.train_run", no_training)
    again = trained_captioner("convnext", "ci", overrides=["train.epochs=1"], splits=("test",))
    assert again.evaluation == json.loads(json.dumps(first.evaluation))
    model, vocab, config = again.load()
    assert config["name"] == "shapes_convnext_ci" and len(vocab) > 4
    full = next((isolated_dirs / "checkpoints" / "ci").glob("*/last.pt"))
    # slim: float16 weights and no optimizer state (AdamW keeps 2 floats per weight)
    assert again.checkpoint.stat().st_size < 0.25 * full.stat().st_size


def test_results_command_rejects_unknown_experiments(isolated_dirs, capsys):
    assert main(["results", "--profile", "ci", "--only", "nope"]) == 2
    assert "captioner-vit" in capsys.readouterr().err
