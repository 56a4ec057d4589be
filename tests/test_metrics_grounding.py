"""The pointing game on hand-built attention and boxes whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptlib.metrics import PointingGame, generated_words, point_caption, pointing_game
from ptlib.metrics.correctness import SceneTruth, TrueObject
from ptlib.metrics.grounding import cell_centres, peak_cell, points_in_boxes, shape_named_by

# A 64 x 64 image on a 4 x 4 grid: cells are 16 px, centres at 8, 24, 40, 56.
GRID = (4, 4)
ALL_KEPT = torch.arange(16)


def _object(shape: str, bbox: tuple[float, float, float, float], size: str = "small") -> TrueObject:
    x, y, w, h = bbox
    return TrueObject(shape, "red", size, bbox, (x + w / 2, y + h / 2))


# circle covers the centre of cell 0 only; square covers cells 10, 11, 14, 15
CIRCLE = _object("circle", (0.0, 0.0, 20.0, 20.0))
SQUARE = _object("square", (32.0, 32.0, 30.0, 30.0), size="large")
SCENE = SceneTruth(7, 64, 64, (CIRCLE, SQUARE))


def _peaked(length: int, memory: int, peaks: dict[int, int]) -> torch.Tensor:
    """(length, memory) attention, uniform except a peak at memory token peaks[t] for step t."""
    attention = torch.full((length, memory), 1.0)
    for step, token in peaks.items():
        attention[step, token] = 10.0
    return attention / attention.sum(dim=1, keepdim=True)


def test_shape_words_are_the_grammar_nouns_singular_and_plural():
    assert shape_named_by("circle") == "circle" and shape_named_by("squares") == "square"
    assert shape_named_by("red") is None and shape_named_by("circless") is None


def test_cell_centres_cover_a_non_square_image_row_major():
    centres = cell_centres((2, 4), width=128, height=64)
    assert centres.shape == (8, 2)
    np.testing.assert_allclose(centres[0], [16, 16])
    np.testing.assert_allclose(centres[5], [48, 48])  # row 1, column 1


def test_points_in_boxes_includes_the_edges():
    boxes = np.array([[10.0, 10.0, 5.0, 5.0]])
    inside = points_in_boxes(np.array([[10, 10], [15, 15], [15.01, 12], [12, 9.99]]), boxes)
    assert inside.tolist() == [True, True, False, False]
    assert not points_in_boxes(np.array([[1.0, 1.0]]), np.zeros((0, 4)))[0]


def test_hit_when_the_peak_is_inside_a_box_of_the_named_shape():
    words = ["a", "small", "red", "circle"]
    (trial,) = point_caption(7, words, _peaked(4, 16, {3: 0}), ALL_KEPT, GRID, SCENE)
    assert (trial.position, trial.word, trial.shape, trial.cell) == (3, "circle", "circle", 0)
    assert trial.point == (8.0, 8.0) and trial.scored and trial.hit
    assert trial.chance == pytest.approx(1 / 16)  # one of 16 kept cell centres is in the box
    assert trial.target_size == "small"


def test_miss_when_the_peak_is_on_another_object():
    # the decoder looks at the square (cell 10) while writing "circle"
    (trial,) = point_caption(7, ["a", "circle"], _peaked(2, 16, {1: 10}), ALL_KEPT, GRID, SCENE)
    assert trial.scored and not trial.hit and trial.cell == 10


def test_pruned_cells_cannot_be_the_peak():
    kept = torch.tensor([5, 10, 1])  # the circle's cell 0 was pruned
    attention = _peaked(2, 3, {1: 2})  # memory token 2 = grid cell 1, just right of the circle
    (trial,) = point_caption(7, ["a", "circle"], attention, kept, GRID, SCENE)
    assert trial.cell == 1 and not trial.hit
    assert trial.chance == 0.0  # no kept cell centre lies in the circle's box
    summary = pointing_game([7], [["a", "circle"]], attention[None], kept[None], GRID, {7: SCENE})
    assert summary["n_unreachable"] == 1 and summary["rate"] == 0.0


def test_fused_token_is_ignored_and_merged_tokens_use_their_representative():
    kept = torch.tensor([10, 0, 3])  # merge keeps representatives, not in grid order
    attention = torch.tensor([[0.1, 0.3, 0.2, 0.4]])  # M = K + 1: the fused token weighs most
    (trial,) = point_caption(7, ["circle"], attention, kept, GRID, SCENE)
    assert trial.cell == 0 and trial.hit
    assert trial.chance == pytest.approx(1 / 3)


def test_plural_and_absent_shapes():
    words = ["two", "large", "red", "squares", "and", "a", "star"]
    trials = point_caption(7, words, _peaked(7, 16, {3: 15, 6: 15}), ALL_KEPT, GRID, SCENE)
    square, star = trials
    assert square.shape == "square" and square.hit and square.chance == pytest.approx(4 / 16)
    assert star.shape == "star" and not star.scored and not star.hit and star.target_size == ""


def test_caption_without_a_shape_word_scores_nothing():
    summary = pointing_game([7], [["a", "small", "red"]], _peaked(3, 16, {})[None], ALL_KEPT[None],
                            GRID, {7: SCENE})
    assert summary["n_captions"] == 1 and summary["n_without_shape_word"] == 1
    assert summary["n_shape_words"] == summary["n_scored"] == 0
    assert summary["rate"] is None and summary["chance_rate"] is None


def test_chance_rate_is_the_mean_hit_rate_of_every_one_hot_pointer():
    kept = torch.tensor([0, 1, 4, 10, 11, 14])
    words = ["a", "circle", "a", "square"]
    hits = {"circle": [], "square": []}
    for token in range(len(kept)):
        one_hot = torch.zeros(4, len(kept))
        one_hot[:, token] = 1.0
        for trial in point_caption(7, words, one_hot, kept, GRID, SCENE):
            hits[trial.shape].append(trial.hit)
    trials = point_caption(7, words, _peaked(4, 6, {}), kept, GRID, SCENE)
    for trial in trials:
        assert trial.chance == pytest.approx(np.mean(hits[trial.shape]))
    assert [t.chance for t in trials] == pytest.approx([1 / 6, 3 / 6])


def test_summary_counts_rates_per_shape_and_size():
    game = PointingGame({7: SCENE, 8: SceneTruth(8, 64, 64, (SQUARE,))})
    attention = torch.stack([_peaked(4, 16, {1: 0, 3: 0}), _peaked(4, 16, {1: 15, 3: 15})])
    words = [["a", "circle", "a", "square"], ["a", "square", "a", "diamond"]]
    game.add([7, 8], words, attention, ALL_KEPT.expand(2, 16), GRID)
    summary = game.summary()
    # image 7: circle hit, square miss; image 8: square hit, diamond absent
    assert (summary["n_shape_words"], summary["n_scored"], summary["n_absent"]) == (4, 3, 1)
    assert summary["hits"] == 2 and summary["rate"] == pytest.approx(2 / 3)
    assert summary["chance_rate"] == pytest.approx((1 / 16 + 4 / 16 + 4 / 16) / 3)
    assert summary["per_shape"]["square"] == {
        "scored": 2, "hits": 1, "rate": 0.5, "chance_rate": pytest.approx(0.25)}
    assert summary["per_shape"]["star"]["rate"] is None
    assert summary["per_size"]["small"]["hits"] == 1 and summary["per_size"]["large"]["scored"] == 2


def test_generated_words_stop_at_eos_and_line_up_with_positions():
    itos = ["<pad>", "<bos>", "<eos>", "<unk>", "a", "circle"]
    tokens = torch.tensor([[4, 5, 2, 0], [4, 3, 5, 5]])
    assert generated_words(tokens, itos) == [["a", "circle"], ["a", "<unk>", "circle", "circle"]]


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="L >= 2 words"):
        point_caption(7, ["a", "circle"], torch.ones(1, 16) / 16, ALL_KEPT, GRID, SCENE)
    with pytest.raises(ValueError, match="kept tokens"):
        peak_cell(torch.ones(2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="grid"):
        point_caption(7, ["circle"], torch.ones(1, 2), torch.tensor([0, 16]), GRID, SCENE)
    game = PointingGame({7: SCENE})
    with pytest.raises(ValueError, match="not in the ground truth"):
        game.add([9], [["circle"]], torch.ones(1, 1, 16), ALL_KEPT[None], GRID)
    with pytest.raises(ValueError, match="same images"):
        game.add([7, 7], [["circle"]], torch.ones(1, 1, 16), ALL_KEPT[None], GRID)
    with pytest.raises(ValueError, match="return_attention=True"):
        game.add([7], [["circle"]], None, None, GRID)
