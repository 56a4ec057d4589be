"""CaptionDataset, collate_captions, transforms and the bad-input policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ptlib.data.annotations import AnnotationError, read_caption_annotations
from ptlib.data.datasets import CaptionDataset, SkippedItem, collate_captions
from ptlib.data.images import BadImageError
from ptlib.data.loaders import build_caption_data
from ptlib.data.shapes import ShapesConfig, generate_shapes_dataset, shapes_paths
from ptlib.data.transforms import build_transform, denormalize
from ptlib.data.vocab import Vocabulary
from ptlib.tokens import BOS_ID, EOS_ID, PAD_ID, UNK_ID

CONFIG = ShapesConfig(img_size=48, n_train=12, n_val=4, n_test=0, n_compositional=0, seed=5)


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes_dataset(root, CONFIG)
    return root


@pytest.fixture(scope="module")
def vocab(shapes_root) -> Vocabulary:
    records, _ = read_caption_annotations(shapes_paths(shapes_root, "train")[1])
    return Vocabulary.build((c for r in records for c in r.captions), min_freq=1)


def _dataset(root: Path, vocab: Vocabulary, **kwargs) -> CaptionDataset:
    image_dir, captions_json, _ = shapes_paths(root, "train")
    return CaptionDataset(image_dir, captions_json, vocab, img_size=CONFIG.img_size, **kwargs)


def test_train_items_pick_a_reproducible_reference_per_epoch(shapes_root, vocab):
    dataset = _dataset(shapes_root, vocab, seed=1)
    assert len(dataset) == CONFIG.n_train
    item = dataset[0]
    assert item.image.shape == (3, 48, 48) and item.image.dtype == torch.float32
    assert item.tokens[0] == BOS_ID and item.tokens[-1] == EOS_ID
    assert len(item.references) == 5
    assert vocab.decode(item.tokens) in [" ".join(vocab.decode(vocab.encode(r)).split())
                                         for r in item.references]
    choices = []
    for epoch in range(8):
        dataset.set_epoch(epoch)
        choices.append([dataset.reference_index(i) for i in range(len(dataset))])
    assert len({tuple(c) for c in choices}) > 1  # the reference changes with the epoch
    assert {i for c in choices for i in c} == set(range(5))  # and every reference gets used
    again = _dataset(shapes_root, vocab, seed=1)
    again.set_epoch(3)
    assert [again.reference_index(i) for i in range(len(again))] == choices[3]
    other_seed = _dataset(shapes_root, vocab, seed=2)
    other_seed.set_epoch(3)
    assert [other_seed.reference_index(i) for i in range(len(again))] != choices[3]


def test_train_reference_first_fixes_one_target_caption_per_image(shapes_root, vocab):
    dataset = _dataset(shapes_root, vocab, seed=1, train_reference="first")
    for epoch in range(4):
        dataset.set_epoch(epoch)
        assert {dataset.reference_index(i) for i in range(len(dataset))} == {0}
    item = dataset[0]
    assert vocab.decode(item.tokens) == " ".join(
        vocab.decode(vocab.encode(item.references[0])).split())
    with pytest.raises(ValueError, match="train_reference must be 'random' or 'first'"):
        _dataset(shapes_root, vocab, train_reference="last")


def test_eval_items_use_the_first_reference_and_carry_all(shapes_root, vocab):
    dataset = _dataset(shapes_root, vocab, mode="eval")
    for epoch in (0, 5):
        dataset.set_epoch(epoch)
        item = dataset[2]
        assert vocab.decode(item.tokens) == vocab.decode(vocab.encode(item.references[0]))
    assert len(item.references) == 5


def test_collate_pads_and_reports_lengths(shapes_root, vocab):
    dataset = _dataset(shapes_root, vocab, max_len=12)
    loader = DataLoader(dataset, batch_size=5, collate_fn=collate_captions)
    batch = next(iter(loader))
    assert batch.images.shape == (5, 3, 48, 48)
    assert batch.tokens.dtype == torch.long and batch.tokens.shape == (5, int(batch.lengths.max()))
    assert int(batch.lengths.max()) <= 12
    for row, length in zip(batch.tokens, batch.lengths, strict=True):
        assert row[0] == BOS_ID and row[length - 1] == EOS_ID
        assert (row[length:] == PAD_ID).all() and (row[:length] != PAD_ID).all()
    assert batch.image_ids.tolist() == [dataset.records[i].image_id for i in range(5)]
    assert len(batch.references) == 5 and batch.skipped == []
    moved = batch.to("cpu")
    assert torch.equal(moved.tokens, batch.tokens) and len(moved) == 5


def test_dataloader_with_a_worker_matches_the_main_process(shapes_root, vocab):
    dataset = _dataset(shapes_root, vocab)
    dataset.set_epoch(4)
    plain = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_captions)))
    worker = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_captions,
                                  num_workers=1)))
    assert torch.equal(plain.tokens, worker.tokens) and torch.equal(plain.images, worker.images)


def test_dataset_without_vocab_yields_images_only(shapes_root):
    image_dir, captions_json, _ = shapes_paths(shapes_root, "val")
    dataset = CaptionDataset(image_dir, captions_json, img_size=32, mode="eval")
    batch = collate_captions([dataset[0], dataset[1]])
    assert batch.tokens is None and batch.lengths is None and batch.images.shape == (2, 3, 32, 32)


def test_arguments_are_checked(shapes_root, vocab):
    image_dir, captions_json, _ = shapes_paths(shapes_root, "train")
    with pytest.raises(ValueError, match="img_size"):
        CaptionDataset(image_dir, captions_json, vocab)
    with pytest.raises(ValueError, match="mode"):
        CaptionDataset(image_dir, captions_json, vocab, img_size=48, mode="test")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_bad_image"):
        CaptionDataset(image_dir, captions_json, vocab, img_size=48, on_bad_image="ignore")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        CaptionDataset(image_dir / "nowhere", captions_json, vocab, img_size=48)


# --- bad input -------------------------------------------------------------------------------


@pytest.fixture
def broken_root(shapes_root, tmp_path) -> Path:
    """A copy of the shapes dataset with one bad image of each kind."""
    root = tmp_path / "broken"
    shutil.copytree(shapes_root, root)
    image_dir, captions_json, _ = shapes_paths(root, "train")
    data = json.loads(captions_json.read_text())
    images = data["images"]
    (image_dir / images[0]["file_name"]).write_bytes(b"")  # zero bytes
    (image_dir / images[1]["file_name"]).unlink()  # missing on disk
    path = image_dir / images[2]["file_name"]
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])  # truncated
    (image_dir / images[3]["file_name"]).write_bytes(b"<html>not an image</html>")
    images[4]["file_name"] = "../../outside.jpg"  # escapes the image root
    Image.new("I;16", (48, 48)).save(image_dir / "deep.png")  # valid, converted
    images[5]["file_name"] = "deep.png"
    captions_json.write_text(json.dumps(data))
    return root


def test_raise_policy_names_the_first_bad_file(broken_root, vocab):
    with pytest.raises(BadImageError, match="empty file"):
        _dataset(broken_root, vocab)


def test_skip_policy_reports_every_bad_image_and_why(broken_root, vocab):
    with pytest.warns(UserWarning, match="skipped 3 item"):
        dataset = _dataset(broken_root, vocab, on_bad_image="skip")
    reasons = dict(dataset.skipped)
    assert len(dataset) == CONFIG.n_train - 3
    assert any("empty file" in r for r in reasons.values())
    assert any("missing on disk" in r for r in reasons.values())
    assert any("outside.jpg" in f and "leaves the image folder" in r for f, r in reasons.items())
    # truncated and non-image files are found when loaded: reported, never a crash
    with pytest.warns(UserWarning, match="skipping bad image"):
        items = [dataset[i] for i in range(3)]
    assert [type(i) is SkippedItem for i in items] == [True, True, False]
    assert "truncated" in items[0].reason and "not an image" in items[1].reason
    assert items[2].image.shape == (3, 48, 48)  # the 16-bit PNG, converted to RGB
    batch = collate_captions(items)
    assert len(batch) == 1 and len(batch.skipped) == 2
    assert len(dataset.skipped) == 5
    empty = collate_captions(items[:2])
    assert len(empty) == 0 and len(empty.skipped) == 2


def test_verify_images_finds_everything_up_front(broken_root, vocab):
    with pytest.warns(UserWarning, match="skipped 5 item"):
        dataset = _dataset(broken_root, vocab, on_bad_image="skip", verify_images=True)
    assert len(dataset) == CONFIG.n_train - 5
    image_dir, captions_json, _ = shapes_paths(broken_root, "train")
    truncated_only = read_caption_annotations(captions_json)[0][2:3]
    CaptionDataset(image_dir, truncated_only, vocab, img_size=48)  # not opened yet: accepted
    with pytest.raises(BadImageError, match="truncated"):
        CaptionDataset(image_dir, truncated_only, vocab, img_size=48, verify_images=True)


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "captions_bad.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{broken", r"captions_bad.json is not valid JSON \(line 1"),
        ([], "top level must be a JSON object"),
        ({"annotations": []}, "the top level lacks key 'images'"),
        ({"images": {}, "annotations": []}, r"\['images'\] must be list, got dict"),
        ({"images": [{"id": 1}], "annotations": []}, r"images\[0\] lacks key 'file_name'"),
        ({"images": [{"id": "1", "file_name": "a.jpg"}], "annotations": []},
         r"images\[0\]\['id'\] must be int, got str"),
        ({"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}],
          "annotations": []}, r"images\[1\] repeats image id 1"),
        ({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1}]},
         r"annotations\[0\] lacks key 'caption'"),
        ({"images": [{"id": 1, "file_name": "a.jpg"}],
          "annotations": [{"image_id": 1, "caption": 7}]}, r"\['caption'\] must be str, got int"),
        ({"images": [{"id": 1, "file_name": "a.jpg"}],
          "annotations": [{"image_id": 2, "caption": "a cat"}]}, "image_id 2, which is not in"),
    ],
)
def test_malformed_annotation_files_name_the_file_and_key(tmp_path, data, message):
    with pytest.raises(AnnotationError, match=message) as info:
        read_caption_annotations(_write(tmp_path, data))
    assert "captions_bad.json" in str(info.value)


def test_empty_captions_are_dropped_and_reported_non_ascii_kept(tmp_path, shapes_root, vocab):
    image_dir, _, _ = shapes_paths(shapes_root, "train")
    files = sorted(p.name for p in image_dir.iterdir())
    data = {
        "images": [{"id": 1, "file_name": files[0]}, {"id": 2, "file_name": files[1]}],
        "annotations": [
            {"image_id": 1, "caption": "   "},
            {"image_id": 1, "caption": "Un cercle rouge — très joli ☺"},
            {"image_id": 1, "caption": ""},
            {"image_id": 2, "caption": "\t\n"},
            {"image_id": 2, "caption": "?!"},
        ],
    }
    records, dropped = read_caption_annotations(_write(tmp_path, data))
    assert [r.image_id for r in records] == [1]
    assert records[0].captions == ("Un cercle rouge — très joli ☺",)
    reasons = [why for _, why in dropped]
    assert reasons.count("empty caption") == 3 and "caption has no words" in reasons
    assert "no usable caption" in reasons
    with pytest.warns(UserWarning, match="skipped 5 item"):
        dataset = CaptionDataset(image_dir, _write(tmp_path, data), vocab, img_size=48)
    tokens = dataset[0].tokens.tolist()
    assert tokens[0] == BOS_ID and tokens.count(UNK_ID) == 5  # un cercle rouge très joli


def test_no_usable_image_is_an_error_not_an_empty_dataset(tmp_path, shapes_root, vocab):
    image_dir, _, _ = shapes_paths(shapes_root, "train")
    data = {"images": [{"id": 1, "file_name": "gone.jpg"}],
            "annotations": [{"image_id": 1, "caption": "a red circle"}]}
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no usable image"):
        CaptionDataset(image_dir, _write(tmp_path, data), vocab, img_size=48, on_bad_image="skip")


# --- transforms and the profile builder ------------------------------------------------------


def test_transforms_use_the_given_size_and_never_flip_by_default():
    image = Image.new("RGB", (80, 60), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 60))  # blue on the left
    for train in (False, True):
        transform = build_transform(40, train=train)
        assert "Flip" not in repr(transform) and "Crop" not in repr(transform).replace(
            "CenterCrop", "")
        out = transform(image)
        assert out.shape == (3, 40, 40)
        shown = denormalize(out)
        assert shown[2, 20, 2] > 0.9 and shown[0, 20, 37] > 0.9  # blue left, red right
    flipped = denormalize(build_transform(40, train=True, hflip=1.0)(image))
    assert flipped[2, 20, 37] > 0.9
    with pytest.raises(ValueError, match="img_size"):
        build_transform(0)
    with pytest.raises(ValueError, match="hflip"):
        build_transform(32, hflip=2.0)


def test_build_caption_data_for_the_ci_profile(isolated_dirs):
    data = build_caption_data("ci", splits=("train", "val", "compositional"))
    assert data.name == "shapes" and data.img_size == 64
    assert set(data.datasets) == {"train", "val", "compositional"}
    assert data.datasets["train"].mode == "train" and data.datasets["val"].mode == "eval"
    assert len(data.datasets["train"]) == 64 and data.vocab.itos[:4] == [
        "<pad>", "<bos>", "<eos>", "<unk>"]
    batch = collate_captions([data.datasets["val"][i] for i in range(3)])
    assert batch.images.shape == (3, 3, 64, 64)
