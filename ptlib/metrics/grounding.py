"""Grounding on the shapes dataset: does the decoder look at the object it names?

The **pointing game** (Zhang et al., 2016) asks one question per generated
shape word: when the decoder wrote ``"circle"``, did the peak of its
cross-attention fall on a circle?

The rules, stated once
----------------------
**Shape words.** A generated word names a shape when it is one of the
grammar's shapes or their plural (:data:`ptlib.data.grammar.SHAPES`,
:func:`ptlib.data.grammar.plural`): the same nouns
:func:`ptlib.data.grammar.parse_caption` reads as the head of a noun phrase.
Every shape word of every caption is a trial, whether or not the rest of the
caption parses (:func:`ptlib.metrics.correctness.parse_model_caption`): where
the decoder looked when it wrote ``"circle"`` does not depend on the words
around it. Captions with no shape word are counted.

**Which attention.** ``model.generate(images, return_attention=True)`` gives,
for the generated token at position ``t``, the cross-attention of the step
that produced it: ``attention[b, t]`` over the ``M`` memory tokens (last
decoder layer, mean over heads). Memory token ``k < K`` sits at grid position
``kept_indices[b, k]`` (for ``merge``, the representative position of its
group); a fused token of the dropped ones (``M = K + 1``, the last) has no
position and is ignored.

**The point.** The peak is the kept token with the largest weight (the first
one on a tie). Its grid cell ``(row, col)`` of the ``(h, w)`` grid is mapped
to the cell centre in the image's pixels:
``x = (col + 0.5) * width / w``, ``y = (row + 0.5) * height / h``
(the encoder sees the whole image, squashed to a square, so the grid covers
it). Pruned cells cannot be the peak: the decoder never saw them.

**Hit, miss, absent.** A trial is scored when the image holds at least one
object of the named shape; it is a *hit* when the point lies inside the box
(``x0 <= x <= x0 + w``, ``y0 <= y <= y0 + h``) of any object of that shape,
else a *miss*. A shape word naming a shape the image lacks is *absent*: a
recognition error, not a grounding one, so it is counted but not scored.

**Chance.** The hit rate of a pointer that picks one of the kept tokens
uniformly at random, computed exactly: for each scored trial, the fraction
of kept cells whose centre lies in a box of the named shape; averaged over
the scored trials. It includes the effect of pruning (a pruned object cell
cannot be hit by chance either) and of the grid (a box that holds no cell
centre cannot be hit at all: such trials are counted as ``n_unreachable``).

**Limits.** One peak per word: attention spread over the whole object
scores the same as attention on one cell of it, and attention split between
two objects of the same shape can still hit. A small object covers about
one token, so its trials are decided by one cell. The game says nothing
about words other than shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ptlib.data.grammar import SHAPES, SIZES, plural
from ptlib.metrics.correctness import SceneTruth
from ptlib.tokens import EOS_ID

SHAPE_WORDS: dict[str, str] = {
    **{shape: shape for shape in SHAPES},
    **{plural(shape): shape for shape in SHAPES},
}
"""Word -> the shape it names (singular and plural nouns of the shapes grammar)."""


def shape_named_by(word: str) -> str | None:
    """The shape a word names (``"circles"`` -> ``"circle"``), or ``None``."""
    return SHAPE_WORDS.get(word)


def generated_words(tokens: torch.Tensor, itos: Sequence[str], eos_id: int = EOS_ID) -> list[list[str]]:
    """The words of each generated caption, one per position, up to ``<eos>``.

    Args:
        tokens: ``(B, L)`` generated ids (:attr:`ptlib.models.GenerationResult.tokens`).
        itos: The vocabulary's words by id (:attr:`ptlib.data.Vocabulary.itos`).
        eos_id: The stop token.

    Returns:
        For each caption, ``words[t]`` is the word of ``tokens[b, t]``, so it
        lines up with ``attention[b, t]``.
    """
    captions = []
    for row in tokens.tolist():
        words = []
        for token in row:
            if token == eos_id:
                break
            words.append(itos[token])
        captions.append(words)
    return captions


def cell_centres(grid: tuple[int, int], width: float, height: float) -> np.ndarray:
    """Pixel centres ``(h * w, 2)`` as ``(x, y)`` of the grid cells, in row-major order.

    Args:
        grid: ``(h, w)`` token grid.
        width: Image width in pixels.
        height: Image height in pixels.
    """
    h, w = grid
    if h < 1 or w < 1:
        raise ValueError(f"grid must be (h, w) with h, w >= 1, got {grid}")
    rows, cols = np.divmod(np.arange(h * w), w)
    return np.stack([(cols + 0.5) * width / w, (rows + 0.5) * height / h], axis=1)


def points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Whether each point lies inside any box (edges included).

    Args:
        points: ``(P, 2)`` as ``(x, y)``.
        boxes: ``(O, 4)`` COCO boxes ``(x0, y0, w, h)``.

    Returns:
        ``(P,)`` bool.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x, y = points[:, :1], points[:, 1:]
    x0, y0 = boxes[:, 0], boxes[:, 1]
    inside = (x >= x0) & (x <= x0 + boxes[:, 2]) & (y >= y0) & (y <= y0 + boxes[:, 3])
    return inside.any(axis=1)


def peak_cell(weights: torch.Tensor, kept_indices: torch.Tensor) -> int:
    """The grid position of the kept token with the largest attention weight.

    Args:
        weights: ``(M,)`` attention over the memory tokens; weights past ``K``
            (a fused token) are ignored.
        kept_indices: ``(K,)`` grid positions of the kept tokens.

    Raises:
        ValueError: If there are fewer weights than kept tokens.
    """
    k = kept_indices.numel()
    if weights.numel() < k:
        raise ValueError(f"{weights.numel()} attention weights for {k} kept tokens: pass the "
                         "attention over the memory tokens (M >= K) with their kept_indices")
    best = int(np.argmax(weights[:k].detach().float().cpu().numpy()))
    return int(kept_indices.reshape(-1)[best])


@dataclass(frozen=True)
class PointingTrial:
    """One shape word of one caption in the pointing game.

    Attributes:
        image_id: The image.
        position: Index of the word in the generated caption (and in its attention).
        word: The generated word (``"circles"``).
        shape: The shape it names (``"circle"``).
        cell: Grid position of the attention peak.
        point: ``(x, y)`` pixel centre of that cell.
        scored: Whether the image holds an object of that shape (else *absent*).
        hit: Whether the point lies in the box of an object of that shape.
        chance: Fraction of kept cells whose centre lies in such a box.
        target_size: Size of the image's objects of that shape: ``"small"``,
            ``"large"``, ``"mixed"`` (both), or ``""`` when absent.
    """

    image_id: int
    position: int
    word: str
    shape: str
    cell: int
    point: tuple[float, float]
    scored: bool
    hit: bool
    chance: float
    target_size: str = ""


def point_caption(
    image_id: int,
    words: Sequence[str],
    attention: torch.Tensor,
    kept_indices: torch.Tensor,
    grid: tuple[int, int],
    truth: SceneTruth,
) -> list[PointingTrial]:
    """Play the pointing game for every shape word of one caption.

    Args:
        image_id: The image id (recorded in the trials).
        words: The generated words, ``words[t]`` produced at step ``t``
            (:func:`generated_words`).
        attention: ``(L, M)`` cross-attention per generated token, ``L >= len(words)``.
        kept_indices: ``(K,)`` grid positions of the memory tokens.
        grid: ``(h, w)`` of the full token grid.
        truth: The image's objects.

    Returns:
        One :class:`PointingTrial` per shape word, in caption order.

    Raises:
        ValueError: If the attention has fewer steps than words or fewer
            weights than kept tokens, or a kept index is outside the grid.
    """
    if attention.ndim != 2 or attention.shape[0] < len(words):
        raise ValueError(f"attention must be (L, M) with L >= {len(words)} words, "
                         f"got {tuple(attention.shape)}")
    kept = kept_indices.reshape(-1).cpu()
    h, w = grid
    if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= h * w):
        raise ValueError(f"kept_indices must lie in the {h}x{w} grid (0..{h * w - 1}), "
                         f"got {int(kept.min())}..{int(kept.max())}")
    centres = cell_centres(grid, truth.width, truth.height)
    kept_centres = centres[kept.numpy()]
    trials = []
    for position, word in enumerate(words):
        shape = shape_named_by(word)
        if shape is None:
            continue
        targets = [o for o in truth.objects if o.shape == shape]
        boxes = np.array([o.bbox for o in targets]).reshape(-1, 4)
        sizes = {o.size for o in targets}
        cell = peak_cell(attention[position], kept)
        point = (float(centres[cell, 0]), float(centres[cell, 1]))
        scored = len(boxes) > 0
        chance = float(points_in_boxes(kept_centres, boxes).mean()) if scored and len(kept) else 0.0
        trials.append(PointingTrial(
            image_id=image_id, position=position, word=word, shape=shape, cell=cell,
            point=point, scored=scored,
            hit=scored and bool(points_in_boxes(np.array([point]), boxes)[0]), chance=chance,
            target_size=sizes.pop() if len(sizes) == 1 else ("mixed" if sizes else ""),
        ))
    return trials


def _rate(numerator: float, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


class PointingGame:
    """Collects pointing-game trials over batches of generated captions.

    Args:
        truth: Image id -> :class:`~ptlib.metrics.correctness.SceneTruth`
            (:func:`~ptlib.metrics.correctness.load_ground_truth`).

    Attributes:
        trials: Every trial so far.
        n_captions: Captions seen.
        n_without_shape_word: Captions with no shape word.
    """

    def __init__(self, truth: Mapping[int, SceneTruth]) -> None:
        self.truth = truth
        self.trials: list[PointingTrial] = []
        self.n_captions = 0
        self.n_without_shape_word = 0

    def add(
        self,
        image_ids: Sequence[int],
        words: Sequence[Sequence[str]],
        attention: torch.Tensor,
        kept_indices: torch.Tensor,
        grid: tuple[int, int],
    ) -> list[PointingTrial]:
        """Score a batch of captions.

        Args:
            image_ids: ``B`` image ids, each in ``truth``.
            words: ``B`` word lists (:func:`generated_words`).
            attention: ``(B, L, M)`` from ``generate(..., return_attention=True)``.
            kept_indices: ``(B, K)`` from the same result.
            grid: ``(h, w)`` of the full token grid (``model.encoder.grid``).

        Returns:
            The batch's trials.

        Raises:
            ValueError: If the sizes disagree or an image id is not in ``truth``.
        """
        if attention is None or kept_indices is None:
            raise ValueError("attention and kept_indices are None: generate the captions with "
                             "model.generate(images, return_attention=True)")
        batch = len(image_ids)
        if len(words) != batch or attention.shape[0] != batch or kept_indices.shape[0] != batch:
            raise ValueError(f"{batch} image ids, {len(words)} captions, attention for "
                             f"{attention.shape[0]} and kept_indices for {kept_indices.shape[0]}: "
                             "they must describe the same images")
        new = []
        for image_id, caption, weights, kept in zip(image_ids, words, attention, kept_indices,
                                                     strict=True):
            image_id = int(image_id)
            if image_id not in self.truth:
                raise ValueError(f"image id {image_id} is not in the ground truth; load the "
                                 "instances file of the split these captions were made for")
            trials = point_caption(image_id, caption, weights, kept, grid, self.truth[image_id])
            self.n_captions += 1
            self.n_without_shape_word += not trials
            new.extend(trials)
        self.trials.extend(new)
        return new

    def summary(self) -> dict[str, Any]:
        """The scores, JSON-ready.

        Returns:
            ``n_captions``, ``n_without_shape_word``, ``n_shape_words`` (all
            trials), ``n_absent`` (shape not in the image), ``n_scored``,
            ``hits``, ``rate`` (hits / scored), ``chance_rate`` (the random
            kept-token pointer's expected rate over the same trials),
            ``n_unreachable`` (scored trials no kept cell centre can hit) and
            ``per_shape``: shape -> ``{scored, hits, rate, chance_rate}``;
            ``per_size``: the same by the trials' ``target_size`` (:class:`PointingTrial`)
            (``small``, ``large``, ``mixed``).
            Rates are ``None`` when nothing was scored.
        """
        scored = [t for t in self.trials if t.scored]

        def group(trials: list[PointingTrial]) -> dict[str, Any]:
            hits = sum(t.hit for t in trials)
            return {"scored": len(trials), "hits": hits, "rate": _rate(hits, len(trials)),
                    "chance_rate": _rate(sum(t.chance for t in trials), len(trials))}

        per_shape = {shape: group([t for t in scored if t.shape == shape]) for shape in SHAPES}
        per_size = {size: group([t for t in scored if t.target_size == size])
                    for size in (*SIZES, "mixed")}
        hits = sum(t.hit for t in scored)
        return {
            "n_captions": self.n_captions,
            "n_without_shape_word": self.n_without_shape_word,
            "n_shape_words": len(self.trials),
            "n_absent": len(self.trials) - len(scored),
            "n_scored": len(scored),
            "hits": hits,
            "rate": _rate(hits, len(scored)),
            "chance_rate": _rate(sum(t.chance for t in scored), len(scored)),
            "n_unreachable": sum(t.chance == 0 for t in scored),
            "per_shape": per_shape,
            "per_size": per_size,
        }


def pointing_game(
    image_ids: Sequence[int],
    words: Sequence[Sequence[str]],
    attention: torch.Tensor,
    kept_indices: torch.Tensor,
    grid: tuple[int, int],
    truth: Mapping[int, SceneTruth],
) -> dict[str, Any]:
    """The pointing game over one batch of captions (see :meth:`PointingGame.summary`)."""
    game = PointingGame(truth)
    game.add(image_ids, words, attention, kept_indices, grid)
    return game.summary()

