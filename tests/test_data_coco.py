"""COCO and the Karpathy split on a tiny fixture (shapes images + a hand-written Karpathy file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ptlib.cli import main
from ptlib.data.annotations import AnnotationError, coco_api
from ptlib.data.coco import (
    PUBLISHED,
    check_coco,
    coco_caption_records,
    karpathy_split_sizes,
    read_karpathy_split,
)
from ptlib.data.datasets import CaptionDataset, collate_captions
from ptlib.data.loaders import build_caption_data
from ptlib.data.shapes import ShapesConfig, generate_shapes_dataset, shapes_paths
from ptlib.data.vocab import Vocabulary

FIXTURES = Path(__file__).parent / "fixtures"
KARPATHY = FIXTURES / "karpathy_tiny.json"


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    """A COCO 2014 layout holding shapes images: 6 'train2014' and 4 'val2014' images."""
    shapes = tmp_path_factory.mktemp("shapes")
    generate_shapes_dataset(
        shapes, ShapesConfig(img_size=48, n_train=6, n_val=4, n_test=0, n_compositional=0)
    )
    root = tmp_path_factory.mktemp("coco")
    (root / "annotations").mkdir()
    for split in ("train", "val"):
        image_dir, captions_json, _ = shapes_paths(shapes, split)
        shutil.copytree(image_dir, root / f"{split}2014")
        shutil.copy(captions_json, root / "annotations" / f"captions_{split}2014.json")
    shutil.copy(KARPATHY, root / "dataset_coco.json")
    return root


def test_check_reports_present_files_and_counts(coco_root, capsys):
    checks = check_coco(coco_root, count_karpathy=True)
    assert all(c.present for c in checks) and len(checks) == 5
    assert main(["data", "coco", "--root", str(coco_root), "--check", "--count"]) == 0
    out = capsys.readouterr().out
    assert "all present" in out and "MISSING" not in out
    assert "6 of 82783 images (incomplete?)" in out
    assert "train 2, restval 2, val 1, test 2" in out


def test_check_names_the_missing_file_where_it_goes_and_where_it_is_published(
    coco_root, tmp_path, capsys
):
    broken = tmp_path / "coco"
    shutil.copytree(coco_root, broken)
    (broken / "annotations" / "captions_val2014.json").unlink()
    shutil.rmtree(broken / "train2014")
    assert main(["data", "coco", "--root", str(broken), "--check"]) == 1
    out = capsys.readouterr().out
    missing = [line for line in out.splitlines() if line.startswith("MISSING")]
    assert len(missing) == 2
    assert str(broken / "annotations" / "captions_val2014.json") in missing[0]
    assert str(broken / "train2014") in missing[1]
    assert PUBLISHED["annotations_trainval2014.zip"] in out
    assert PUBLISHED["train2014.zip"] in out
    assert f"unzip it in {broken}" in out
    assert "2 of 5 missing" in out


def test_check_2017_and_empty_root(tmp_path, capsys):
    assert main(["data", "coco", "--root", str(tmp_path), "--check", "--year", "2017",
                 "--no-karpathy"]) == 1
    out = capsys.readouterr().out
    assert out.count("MISSING") == 4
    assert "captions_train2017.json" in out and PUBLISHED["val2017.zip"] in out
    assert "dataset_coco.json" not in out
    assert main(["data", "coco", "--root", str(tmp_path)]) == 2  # no --check: nothing to do


def test_karpathy_splits(coco_root):
    path = coco_root / "dataset_coco.json"
    assert karpathy_split_sizes(path) == {"train": 2, "restval": 2, "val": 1, "test": 2}
    train, dropped = read_karpathy_split(path, "train")
    assert [r.image_id for r in train] == [1, 2, 3]  # image 4 has no usable caption
    assert train[0].file_name == "train2014/shapes_train_00000001.jpg"
    assert train[0].captions == ("A small red circle.", "a red circle")
    assert train[1].captions == ("two blue squares",)  # from tokens when raw is absent
    assert train[2].captions == ("A green star",)
    assert [why for _, why in dropped] == ["empty caption", "empty caption", "no usable caption"]
    assert [r.image_id for r in read_karpathy_split(path, "train", include_restval=False)[0]] == [
        1, 2]
    assert [r.image_id for r in read_karpathy_split(path, "test")[0]] == [8, 9]
    with pytest.raises(ValueError, match="Karpathy split"):
        read_karpathy_split(path, "dev")


def test_karpathy_records_feed_a_caption_dataset(coco_root):
    records, _ = read_karpathy_split(coco_root / "dataset_coco.json", "test")
    vocab = Vocabulary.build([c for r in records for c in r.captions], min_freq=1)
    dataset = CaptionDataset(coco_root, records, vocab, img_size=32, mode="eval")
    batch = collate_captions([dataset[0], dataset[1]])
    assert batch.images.shape == (2, 3, 32, 32)
    assert batch.references[0] == ("An orange triangle, café",)
    assert vocab.decode(batch.tokens[0]) == "an orange triangle café"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["images"][0].pop("split"), r"images\[0\] lacks key 'split'"),
        (lambda d: d["images"][1].update(split="training"), r"images\[1\]\['split'\] is 'training'"),
        (lambda d: d["images"][0].pop("filename"), r"images\[0\] lacks key 'filename'"),
        (lambda d: d["images"][0].update(sentences="a cat"), r"\['sentences'\] must be list"),
        (lambda d: d.pop("images"), "lacks key 'images'"),
    ],
)
def test_malformed_karpathy_files_name_file_entry_and_key(tmp_path, mutate, message):
    data = json.loads(KARPATHY.read_text())
    mutate(data)
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=message) as info:
        read_karpathy_split(path, "train")
    assert str(path) in str(info.value)


def test_official_coco_split_via_records_and_pycocotools(coco_root, tmp_path):
    records, image_dir, dropped = coco_caption_records(coco_root, "val")
    assert len(records) == 4 and image_dir == coco_root / "val2014" and dropped == []
    assert all(len(r.captions) == 5 for r in records)
    coco = coco_api(coco_root / "annotations" / "captions_val2014.json")
    assert sorted(coco.getImgIds()) == sorted(r.image_id for r in records)
    with pytest.raises(FileNotFoundError, match="captions_train2017.json"):
        coco_caption_records(coco_root, "train", year=2017)
    with pytest.raises(FileNotFoundError, match="annotations_trainval2014.zip"):
        coco_caption_records(tmp_path, "val")


def test_coco_run_config_builds_coco_datasets_from_the_karpathy_file(coco_root):
    from ptlib import course
    from ptlib.train import load_run_config

    section = load_run_config("coco_vit_b16")["data"]
    profile = course.Profile(name="run", description="coco", seed=0, settings={"data": section})
    data = build_caption_data(profile, root=coco_root, splits=("train", "test"))
    assert data.name == "coco" and data.img_size == 224
    assert len(data.datasets["train"]) == 3 and len(data.datasets["test"]) == 2
    assert data.datasets["test"][0].image.shape == (3, 224, 224)
    with pytest.raises(FileNotFoundError, match="ptlib data coco --root"):
        build_caption_data(profile, root=coco_root / "nothing-here")
