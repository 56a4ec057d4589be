"""Pretext data: the stream follows the training rules, the targets match hand-made scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptlib.data.shapes import HELD_OUT_PAIRS, SPLITS, ShapeObject, ShapesConfig, make_example
from ptlib.pretrain import (
    ATTRIBUTES,
    KINDS,
    PRETEXT_EVAL_STREAM,
    PRETEXT_STREAM,
    PretextDataset,
    draw_scene,
    patch_cover,
    scene_targets,
    token_owners,
)


def _box(shape: str, colour: str, size: str, x0: float, y0: float, x1: float, y1: float
         ) -> ShapeObject:
    polygon = (x0, y0, x1, y0, x1, y1, x0, y1)
    return ShapeObject(shape, colour, size, (x0, y0, x1 - x0, y1 - y0), polygon)


def test_dense_targets_on_a_hand_made_scene():
    """A 32 px square in the top-left quarter owns exactly its four 16 px patches; a
    sliver covering 10% of one patch owns only that patch (its best), not a neighbour."""
    big = _box("square", "red", "large", 0, 0, 32, 32)
    sliver = _box("star", "blue", "small", 48, 48, 64, 49.6)  # 10% of patch (3, 3)
    targets = scene_targets([big, sliver], 64, (4, 4))
    colour = targets["colour"].view(4, 4)
    expected = torch.zeros(4, 4, dtype=torch.long)
    expected[:2, :2] = ATTRIBUTES["colour"].index("red")
    expected[3, 3] = ATTRIBUTES["colour"].index("blue")
    assert torch.equal(colour, expected)
    assert targets["shape"].view(4, 4)[0, 0] == ATTRIBUTES["shape"].index("square")
    assert targets["size"].view(4, 4)[3, 3] == ATTRIBUTES["size"].index("small")
    assert targets["presence"].sum() == 2
    assert targets["presence"][KINDS.index(("large", "red", "square"))] == 1
    assert targets["presence"][KINDS.index(("small", "blue", "star"))] == 1
    assert targets["count"] == 1  # two objects


def test_min_cover_decides_shared_patches():
    """An object half over two patches owns both at min_cover 0.25, and only its anchor
    patch when it never reaches min_cover."""
    half = _box("circle", "green", "small", 8, 0, 24, 16)  # half of patch 0, half of patch 1
    assert token_owners([half], 64, (4, 4), min_cover=0.25).tolist()[:3] == [0, 0, -1]
    owners = token_owners([half], 64, (4, 4), min_cover=0.9)
    assert (owners == 0).sum() == 1  # still seen by one token
    assert token_owners([], 64, (4, 4)).tolist() == [-1] * 16


def test_stream_is_deterministic_and_not_a_captioning_split():
    one = draw_scene(5, img_size=64)
    again = draw_scene(5, img_size=64)
    assert np.array_equal(np.asarray(one.image), np.asarray(again.image))
    config = ShapesConfig(img_size=64)
    for split in SPLITS:  # the same index of every captioning split draws another scene
        image = make_example(config, split, 5)[0]
        assert not np.array_equal(np.asarray(image), np.asarray(one.image))
    with pytest.raises(ValueError, match="captioning split"):
        draw_scene(0, img_size=64, stream=1)


def test_no_held_out_pair_is_ever_drawn():
    """The compositional split's colour-shape pairs never appear in either pretext stream."""
    held = set(HELD_OUT_PAIRS)
    seen = set()
    for stream in (PRETEXT_STREAM, PRETEXT_EVAL_STREAM):
        for index in range(300):
            for obj in draw_scene(index, img_size=64, stream=stream, jpeg_quality=None).objects:
                seen.add((obj.colour, obj.shape))
    assert not seen & held
    assert len(seen) == 30 - len(held)  # every allowed pair does occur


def test_dataset_items_have_the_encoder_grid():
    data = PretextDataset(3, img_size=64, grid=(8, 8), start=10)
    item = data[2]
    assert item["images"].shape == (3, 64, 64) and item["images"].dtype == torch.float32
    assert item["colour"].shape == item["shape"].shape == item["size"].shape == (64,)
    assert item["presence"].shape == (60,) and item["count"].ndim == 0
    scene = draw_scene(12, img_size=64)
    assert item["presence"].sum() == len({(o.size, o.colour, o.shape) for o in scene.objects})
    with pytest.raises(IndexError):
        data[3]


def test_patch_cover_is_the_covered_share():
    big = _box("square", "red", "large", 0, 0, 32, 32)
    half = _box("circle", "green", "small", 40, 0, 56, 16)  # half of patches 2 and 3
    cover = patch_cover([big, half], 64, (4, 4))
    assert cover.shape == (16, 2)
    expected_big = np.zeros(16)
    expected_big[[0, 1, 4, 5]] = 1.0
    assert np.abs(cover[:, 0] - expected_big).max() < 0.03  # edge sub-pixels only
    assert np.abs(cover[[2, 3], 1] - 0.5).max() < 0.03
    assert patch_cover([], 64, (4, 4)).shape == (16, 0)
