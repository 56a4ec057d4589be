"""The shapes generator: COCO layout, determinism, true captions, compositional split, CLI."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from ptlib.cli import main
from ptlib.data.grammar import (
    COLOURS,
    COUNT_WORDS,
    SHAPES,
    SIZES,
    CaptionParseError,
    Group,
    parse_caption,
    relation_holds,
)
from ptlib.data.shapes import (
    HELD_OUT_PAIRS,
    SPLITS,
    ShapesConfig,
    ensure_shapes_dataset,
    generate_shapes_dataset,
    make_example,
    shapes_paths,
)
from ptlib.data.vocab import tokenize

SMALL = ShapesConfig(img_size=64, n_train=40, n_val=8, n_test=8, n_compositional=12, seed=3)


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes_dataset(root, SMALL)
    return root


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_same_seed_gives_byte_identical_files_and_other_seed_differs(shapes_root, tmp_path):
    generate_shapes_dataset(tmp_path / "again", SMALL)
    first, second = _tree_digest(shapes_root), _tree_digest(tmp_path / "again")
    assert len(first) == 4 * 2 + SMALL.n_train + SMALL.n_val + SMALL.n_test + 12 + 1
    assert first == second
    generate_shapes_dataset(tmp_path / "other", SMALL, seed=4)
    other = _tree_digest(tmp_path / "other")
    assert other.keys() == first.keys()
    assert sum(other[k] != first[k] for k in first) > len(first) // 2


@pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")
def test_pycocotools_reads_captions_and_instances(shapes_root):
    for split in SPLITS:
        image_dir, captions_json, instances_json = shapes_paths(shapes_root, split)
        captions = COCO(str(captions_json))
        assert len(captions.getImgIds()) == SMALL.split_sizes()[split]
        for image_id in captions.getImgIds():
            assert len(captions.imgToAnns[image_id]) == 5
            info = captions.loadImgs(image_id)[0]
            with Image.open(image_dir / info["file_name"]) as image:
                assert image.size == (SMALL.img_size, SMALL.img_size)
                assert image.mode == "RGB"
        instances = COCO(str(instances_json))
        assert [c["name"] for c in instances.loadCats(instances.getCatIds())] == list(SHAPES)
        for ann in instances.loadAnns(instances.getAnnIds())[:10]:
            mask = instances.annToMask(ann)
            assert mask.shape == (SMALL.img_size, SMALL.img_size)
            assert 0.7 * ann["area"] <= mask.sum() <= 1.3 * ann["area"] + 6


def test_image_ids_are_unique_across_splits(shapes_root):
    ids = [im["id"] for s in SPLITS for im in _load(shapes_paths(shapes_root, s)[1])["images"]]
    assert len(ids) == len(set(ids)) == sum(SMALL.split_sizes().values())


def _objects_by_image(instances: dict) -> dict[int, list[dict]]:
    grouped: dict[int, list[dict]] = defaultdict(list)
    for ann in instances["annotations"]:
        grouped[ann["image_id"]].append(ann)
    return grouped


@pytest.mark.parametrize("split", SPLITS)
def test_every_reference_parses_back_to_the_ground_truth(shapes_root, split):
    _, captions_json, instances_json = shapes_paths(shapes_root, split)
    objects = _objects_by_image(_load(instances_json))
    for ann in _load(captions_json)["annotations"]:
        meaning = parse_caption(ann["caption"])
        truth = Counter((o["size"], o["colour"], o["shape"]) for o in objects[ann["image_id"]])
        assert {g.kind: g.count for g in meaning.groups} == dict(truth), ann["caption"]
        assert len(meaning.groups) == len(truth)  # no group named twice as a new group
        assert meaning.to_json() == {k: ann[k] for k in ("objects", "relation")}
        if len(truth) == 1:
            assert meaning.relation is None
            continue
        relation = meaning.relation
        assert relation is not None, ann["caption"]

        def centres(group: Group, image_id: int = ann["image_id"]) -> list[tuple[float, float]]:
            return [tuple(o["centre"]) for o in objects[image_id]
                    if (o["size"], o["colour"], o["shape"]) == group.kind]

        subject, obj = meaning.groups[relation.subject], meaning.groups[relation.object]
        assert relation_holds(relation.relation, centres(subject), centres(obj), SMALL.img_size)


def test_references_name_count_colour_size_shape_and_differ(shapes_root):
    _, captions_json, _ = shapes_paths(shapes_root, "train")
    by_image: dict[int, list[str]] = defaultdict(list)
    for ann in _load(captions_json)["annotations"]:
        by_image[ann["image_id"]].append(ann["caption"])
    words_seen: set[str] = set()
    for captions in by_image.values():
        assert len(captions) == len(set(captions)) == 5
        for caption in captions:
            words = set(tokenize(caption))
            assert words & set(COLOURS) and words & set(SIZES)
            assert words & (set(SHAPES) | {s + "s" for s in SHAPES})
            assert words & set(COUNT_WORDS.values())
            words_seen |= words
    assert {"left", "right", "above", "below"} <= words_seen
    assert {"two"} <= words_seen


def test_groups_objects_that_share_kind_with_a_count():
    config = ShapesConfig(img_size=64)
    plural_seen = False
    for index in range(60):
        _, groups, per_group, captions = make_example(config, "train", index)
        kinds = [g.kind for g in groups]
        assert len(kinds) == len(set(kinds))
        assert [len(objs) for objs in per_group] == [g.count for g in groups]
        if any(g.count > 1 for g in groups):
            plural_seen = True
            assert all(any(f"{COUNT_WORDS[g.count]} {g.size} {g.colour} {g.shape}s" in c
                           for c, _ in captions) for g in groups if g.count > 1)
    assert plural_seen


def test_objects_do_not_overlap_and_small_ones_are_recognisable():
    config = ShapesConfig(img_size=96)
    for index in range(40):
        _, _, per_group, _ = make_example(config, "train", index)
        boxes = [o.bbox for objs in per_group for o in objs]
        for i, (x, y, w, h) in enumerate(boxes):
            assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96
            for x2, y2, w2, h2 in boxes[i + 1 :]:
                assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y
        for objs in per_group:
            for o in objs:
                if o.size == "small":
                    assert max(o.bbox[2], o.bbox[3]) >= 14.0  # >= ~one 16 px patch


def test_compositional_pairs_never_occur_in_train_val_test(shapes_root):
    held = {tuple(p) for p in HELD_OUT_PAIRS}
    for split in SPLITS:
        _, _, instances_json = shapes_paths(shapes_root, split)
        pairs = {(a["colour"], a["shape"]) for a in _load(instances_json)["annotations"]}
        if split == "compositional":
            assert pairs and pairs <= held
        else:
            assert not pairs & held
    train = _load(shapes_paths(shapes_root, "train")[2])["annotations"]
    assert {a["shape"] for a in train} == set(SHAPES)  # every shape still seen in training


def test_images_look_like_their_annotations(shapes_root):
    """The pixel at each object's centre has the object's colour, not the background's."""
    from ptlib.data.shapes import COLOUR_RGB

    image_dir, captions_json, instances_json = shapes_paths(shapes_root, "val")
    files = {im["id"]: im["file_name"] for im in _load(captions_json)["images"]}
    for ann in _load(instances_json)["annotations"]:
        if ann["shape"] == "star":
            continue  # a star's box centre may fall near an inner vertex
        pixels = np.asarray(Image.open(image_dir / files[ann["image_id"]]), dtype=float)
        cx, cy = (int(v) for v in ann["centre"])
        patch = pixels[cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3).mean(axis=0)
        distances = {c: np.linalg.norm(patch - np.array(rgb)) for c, rgb in COLOUR_RGB.items()}
        assert min(distances, key=distances.get) == ann["colour"]


def test_parse_caption_rejects_text_outside_the_grammar():
    with pytest.raises(CaptionParseError, match="dog"):
        parse_caption("a small red dog")
    with pytest.raises(CaptionParseError, match="incomplete"):
        parse_caption("two red circles")
    with pytest.raises(CaptionParseError, match="disagrees"):
        parse_caption("two small red circle")
    meaning = parse_caption("A small red circle to the left of a large blue square.")
    assert meaning.groups == (Group(1, "small", "red", "circle"), Group(1, "large", "blue", "square"))
    assert (meaning.relation.subject, meaning.relation.relation, meaning.relation.object) == (
        0, "left_of", 1)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="img_size"):
        ShapesConfig(img_size=8)
    with pytest.raises(ValueError, match="max_objects"):
        ShapesConfig(max_objects=5)
    with pytest.raises(ValueError, match="n_train"):
        ShapesConfig(n_train="10")  # type: ignore[arg-type]


def test_ensure_shapes_dataset_generates_once_under_a_parameter_key(isolated_dirs):
    root = ensure_shapes_dataset("ci")
    assert root.parent == isolated_dirs / "data"
    assert root.name.startswith("shapes-64px-64-")
    stamp = (root / "shapes.json").stat().st_mtime_ns
    assert ensure_shapes_dataset("ci") == root
    assert (root / "shapes.json").stat().st_mtime_ns == stamp  # not regenerated
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temp left
    assert ShapesConfig(img_size=64, n_train=64).key() != ShapesConfig(img_size=96, n_train=64).key()
    from ptlib import course

    coco_data = course.Profile(name="x", description="", seed=0,
                               settings={"data": {"dataset": "coco"}})
    with pytest.raises(ValueError, match="coco"):
        ensure_shapes_dataset(coco_data)


def test_cli_shapes_writes_the_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["data", "shapes", "--out", str(out), "--n-train", "6", "--n-val", "2",
                 "--n-test", "2", "--n-compositional", "2", "--img-size", "48", "--seed", "1",
                 "--quiet"])
    assert code == 0
    assert "wrote 12 images" in capsys.readouterr().out
    info = _load(out / "shapes.json")
    assert info["config"]["img_size"] == 48 and info["splits"]["train"] == 6
    assert len(list((out / "images" / "train").glob("*.jpg"))) == 6
    assert main(["data", "shapes", "--out", str(out), "--img-size", "8"]) == 2
    assert "img_size" in capsys.readouterr().err
