"""The COCO-format fixture: passes the install check, reads as COCO + Karpathy, trains Table 1."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest

from ptlib.cli import main
from ptlib.data.annotations import coco_api, read_caption_annotations
from ptlib.data.coco import check_coco, karpathy_split_sizes, read_karpathy_split
from ptlib.data.datasets import collate_captions
from ptlib.data.fixtures import coco_file_name, karpathy_assignment, make_coco_fixture
from ptlib.data.vocab import tokenize
from ptlib.train.run import train_run
from ptlib.train.runconfig import load_run_config


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory) -> Path:
    return make_coco_fixture(tmp_path_factory.mktemp("fixture") / "coco", n_images=12,
                             img_size=48)


def test_install_check_passes(fixture_root, capsys):
    assert all(check.present for check in check_coco(fixture_root))
    assert main(["data", "coco", "--root", str(fixture_root), "--check", "--count"]) == 0
    out = capsys.readouterr().out
    assert "all present" in out and "MISSING" not in out
    assert "train 6, restval 2, val 2, test 2" in out
    assert "6 of 82783 images" in out and "6 of 40504 images" in out


def test_coco_names_and_caption_files(fixture_root):
    train_files = sorted(p.name for p in (fixture_root / "train2014").iterdir())
    assert train_files[0] == coco_file_name("train", 1) == "COCO_train2014_000000000001.jpg"
    annotation_ids = []
    for split in ("train", "val"):
        path = fixture_root / "annotations" / f"captions_{split}2014.json"
        records, dropped = read_caption_annotations(path)
        assert len(records) == 6 and dropped == []
        assert all(len(r.captions) == 5 for r in records)
        assert all((fixture_root / f"{split}2014" / r.file_name).is_file() for r in records)
        annotation_ids += [a["id"] for a in json.loads(path.read_text())["annotations"]]
        assert len(coco_api(path).getImgIds()) == 6  # pycocotools reads it
    assert len(annotation_ids) == len(set(annotation_ids)) == 60  # unique over both files, as COCO


def test_karpathy_file_agrees_with_the_caption_files(fixture_root):
    karpathy = fixture_root / "dataset_coco.json"
    assert karpathy_split_sizes(karpathy) == {"train": 6, "restval": 2, "val": 2, "test": 2}
    train, dropped = read_karpathy_split(karpathy, "train")
    assert len(train) == 8 and dropped == []  # train + restval, as usually trained on
    official = {r.image_id: r for split in ("train", "val") for r in read_caption_annotations(
        fixture_root / "annotations" / f"captions_{split}2014.json")[0]}
    for split in ("train", "restval", "val", "test"):
        for record in read_karpathy_split(karpathy, split, include_restval=False)[0]:
            folder = "train2014" if split == "train" else "val2014"
            assert record.file_name == f"{folder}/{official[record.image_id].file_name}"
            assert record.captions == official[record.image_id].captions
    entries = json.loads(karpathy.read_text())["images"]
    assert [e["imgid"] for e in entries] == list(range(12))
    sentids = [s["sentid"] for e in entries for s in e["sentences"]]
    assert sentids == list(range(60))
    assert all(s["tokens"] == tokenize(s["raw"]) for e in entries for s in e["sentences"])


def test_same_arguments_give_identical_files(fixture_root, tmp_path):
    again = make_coco_fixture(tmp_path / "coco", n_images=12, img_size=48)
    names = ["dataset_coco.json", "annotations/captions_train2014.json",
             "annotations/captions_val2014.json", "val2014/" + coco_file_name("val", 12)]
    match, mismatch, errors = filecmp.cmpfiles(fixture_root, again, names, shallow=False)
    assert match == names and not mismatch and not errors
    other = make_coco_fixture(tmp_path / "other", n_images=12, img_size=48, seed=1)
    assert (other / "dataset_coco.json").read_text() != (again / "dataset_coco.json").read_text()


def test_karpathy_assignment():
    assert karpathy_assignment(3) == ["val", "test", "restval"]
    assert karpathy_assignment(7) == ["val"] * 2 + ["test"] * 2 + ["restval"] * 3
    with pytest.raises(ValueError, match="at least 3"):
        karpathy_assignment(2)


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="n_images=5.*at least 6"):
        make_coco_fixture(tmp_path / "small", n_images=5)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="busy.*not an empty folder"):
        make_coco_fixture(tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="img_size"):
        make_coco_fixture(tmp_path / "tiny", img_size=8)


def test_table1_recipe_trains_on_the_fixture(fixture_root, tmp_path):
    overrides = [f"data.coco_root={fixture_root}", "model.encoder=vit_tiny_patch16_224",
                 "model.pretrained=false", "data.img_size=32",
                 "model.d_model=32", "model.ff_dim=64", "train.epochs=1", "train.batch_size=8",
                 "train.eval_every=0", "train.num_workers=0", "data.vocab_min_freq=1"]
    config = load_run_config("coco_vit_b16", overrides)
    result = train_run(config, tmp_path / "run", device="cpu", show_progress=False)
    assert result.status == "finished" and result.best_checkpoint is not None
    row = result.history[0]
    assert row["step"] == 1 and 0 < row["train_loss"] < 20 and "val_loss" in row
    from ptlib.train.run import build_run_data

    data = build_run_data(config["data"], splits=("train", "test"))
    batch = collate_captions([data.datasets["test"][0], data.datasets["test"][1]])
    assert tuple(batch.images.shape) == (2, 3, 32, 32) and len(data.datasets["train"]) == 8
