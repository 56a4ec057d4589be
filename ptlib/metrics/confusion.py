"""Confusion matrices of named against true attributes (shape, colour) on matched groups.

Rows are the true attribute, columns the one the caption named, counted over
the (named group, true group) pairs that
:func:`ptlib.metrics.correctness.match_groups` pairs up: one count per pair,
whatever the group's size. Unmatched groups (hallucinated or missing) are not
in the matrix; :func:`ptlib.metrics.correctness.score_correctness` reports
them as hallucination rate and object recall. Plotting is left to the book
(``ax.imshow(counts)`` with the labels on both axes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ptlib.data.grammar import Group


def confusion_counts(
    pairs: Iterable[tuple[Group, Group]], attribute: str, labels: Sequence[str]
) -> list[list[int]]:
    """Count ``(true, named)`` values of one attribute over matched group pairs.

    Args:
        pairs: ``(named_group, true_group)`` pairs.
        attribute: ``"shape"``, ``"colour"`` or ``"size"``.
        labels: The attribute's values, in row/column order.

    Returns:
        ``counts[t][n]``: pairs whose true group has ``labels[t]`` and whose
        named group has ``labels[n]`` (a ``len(labels) x len(labels)`` list of lists).

    Raises:
        ValueError: If a group's value is not in ``labels``.
    """
    index = {label: k for k, label in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for named, true in pairs:
        values = (getattr(true, attribute), getattr(named, attribute))
        for value in values:
            if value not in index:
                raise ValueError(f"{attribute} {value!r} is not one of the labels {tuple(labels)}")
        counts[index[values[0]]][index[values[1]]] += 1
    return counts


def _matrix(result: Mapping[str, Any], key: str) -> tuple[list[str], np.ndarray]:
    block = result.get(key, result)
    if not isinstance(block, Mapping) or "labels" not in block or "counts" not in block:
        raise ValueError(
            f"expected the result of score_correctness (with a {key!r} entry) or its {key!r} "
            "entry itself ({'labels': [...], 'counts': [[...]]})"
        )
    labels = [str(label) for label in block["labels"]]
    counts = np.asarray(block["counts"], dtype=np.int64)
    if counts.shape != (len(labels), len(labels)):
        raise ValueError(f"{key}['counts'] has shape {counts.shape}, expected "
                         f"{(len(labels), len(labels))} for {len(labels)} labels")
    return labels, counts


def shape_confusion_matrix(result: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """The shape confusion matrix of a :func:`~ptlib.metrics.correctness.score_correctness` result.

    Args:
        result: The metrics dict (or its ``"shape_confusion"`` entry), e.g.
            read back from a metrics JSON.

    Returns:
        ``(shapes, counts)``: the shape names and an int array of shape
        ``(S, S)``, rows true shape, columns named shape.
    """
    return _matrix(result, "shape_confusion")


def colour_confusion_matrix(result: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """The colour confusion matrix of a result (as :func:`shape_confusion_matrix`)."""
    return _matrix(result, "colour_confusion")
