"""Tables and numbers from the pruning study's rows (the data of chapter 7's conclusions).

Every function reads a :class:`~ptlib.experiments.pruning_study.StudyResult`;
nothing here measures, and nothing here writes sentences: the chapter phrases
its conclusions in Markdown from these numbers. Curves average over training
seeds and keep the spread (min, max); :func:`is_tie` says when a difference lies
inside that spread, so two settings are called a tie instead of being ranked.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ptlib.experiments.pruning_study import StudyResult

METRIC_LABELS: dict[str, str] = {
    "cider": "CIDEr-D",
    "bleu4": "BLEU-4",
    "exact_set": "strict exact object-set accuracy",
    "exact_set_lenient": "lenient exact object-set accuracy",
    "shape_accuracy": "shape accuracy",
    "hallucination_rate": "hallucination rate",
    "kept_object_recall": "kept-object recall",
}
"""Row field -> the name used in tables and figures."""

DROP_THRESHOLD = 0.05
"""A drop counts once a metric falls below ``1 - DROP_THRESHOLD`` of its unpruned value."""


@dataclass(frozen=True)
class CurvePoint:
    """One ratio of a quality-vs-ratio curve.

    Attributes:
        ratio: Fraction of tokens removed.
        mean: Mean over seeds.
        low: Smallest seed's value.
        high: Largest seed's value.
        n_seeds: How many seeds were measured.
        tokens_kept: Visual tokens the decoder attends to.
    """

    ratio: float
    mean: float
    low: float
    high: float
    n_seeds: int
    tokens_kept: int


def exact_set_field(result: StudyResult, models: Iterable[str] | None = None) -> str:
    """The exact-set field of a study's rows: strict ``exact_set``, else ``exact_set_lenient``.

    Rows measured before the strict measure existed keep no captions, so only their
    lenient figure exists (``scripts/rescore_correctness.py`` renamed it); a figure or
    table labels the field with :data:`METRIC_LABELS`, so the lenient one is named so.

    Args:
        result: The study.
        models: Look only at these models' rows (default: every row), e.g. to compare
            two captioners on the strict figure where both have it.

    Raises:
        ValueError: If the rows hold neither field.
    """
    chosen = set(models) if models is not None else None
    rows = [row for row in result.rows if chosen is None or row["model"] in chosen]
    if rows and all("exact_set" in row for row in rows):
        return "exact_set"
    if rows and all("exact_set_lenient" in row for row in rows):
        return "exact_set_lenient"
    raise ValueError("the study's rows hold neither 'exact_set' nor 'exact_set_lenient'")


def curve(
    result: StudyResult,
    model: str,
    method: str,
    metric: str = "cider",
    *,
    placement: str = "memory",
    split: str = "test",
    seed: int | None = None,
) -> list[CurvePoint]:
    """Metric vs prune ratio for one model and method, averaged over seeds.

    ``seed`` restricts the curve to one training seed.

    The unpruned point (ratio 0, method ``"none"``, or the model's own method for
    a model trained with pruning) starts every curve.
    """
    rows = result.select(model=model, split=split)
    if seed is not None:
        rows = [row for row in rows if row["seed"] == seed]
    by_ratio: dict[float, list[dict[str, Any]]] = {}
    for row in rows:
        unpruned = row["ratio"] == 0
        if (row["method"] == method and row["placement"] == placement) or unpruned:
            by_ratio.setdefault(row["ratio"], []).append(row)
    points = []
    for ratio in sorted(by_ratio):
        values = [r[metric] for r in by_ratio[ratio] if r.get(metric) is not None]
        if not values:
            continue
        points.append(CurvePoint(ratio, statistics.fmean(values), min(values), max(values),
                                 len(values), int(by_ratio[ratio][0]["tokens_kept"])))
    return points


def value_at(points: list[CurvePoint], ratio: float) -> float | None:
    """The mean of a curve at ``ratio`` (``None`` if not measured)."""
    return next((p.mean for p in points if abs(p.ratio - ratio) < 1e-9), None)


def methods_of(result: StudyResult, model: str, placement: str = "memory") -> list[str]:
    """The pruning methods measured for a model (besides ``"none"``), in study order."""
    methods = [r["method"] for r in result.select(model=model, placement=placement)]
    return [m for m in dict.fromkeys(methods) if m != "none"]


def mean_retention(points: list[CurvePoint], ratios: list[float] | None = None) -> float | None:
    """Mean over pruned ratios of ``value(ratio) / value(0)``."""
    base = value_at(points, 0.0)
    if not base:
        return None
    kept = [p.mean / base for p in points if p.ratio > 0 and (ratios is None or p.ratio in ratios)]
    return statistics.fmean(kept) if kept else None


def best_method(
    result: StudyResult, model: str, metric: str = "cider", placement: str = "memory"
) -> str | None:
    """The method with the highest mean metric over the pruned ratios."""
    scored = {}
    for method in methods_of(result, model, placement):
        points = [p for p in curve(result, model, method, metric, placement=placement)
                  if p.ratio > 0]
        if points:
            scored[method] = statistics.fmean(p.mean for p in points)
    return max(scored, key=scored.__getitem__) if scored else None


def first_drop(points: list[CurvePoint], threshold: float = DROP_THRESHOLD) -> float | None:
    """The smallest ratio whose mean falls below ``(1 - threshold)`` of the unpruned mean."""
    base = value_at(points, 0.0)
    if base is None:
        return None
    return next((p.ratio for p in points if p.ratio > 0 and p.mean < (1 - threshold) * base),
                None)


def headline_table(
    result: StudyResult, ratios: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7),
    metrics: tuple[str, ...] = ("cider", "exact_set"),
) -> list[dict[str, Any]]:
    """Per inference-pruned model: its best method (by CIDEr-D) and each metric at ``ratios``."""
    table = []
    for model, info in result.models.items():
        if info.get("trained_with", "none") != "none":
            continue
        method = best_method(result, model)
        if method is None:
            continue
        row: dict[str, Any] = {"model": model, "tokens": info["tokens"], "best method": method,
                               "seeds": len(info["runs"])}
        for metric in metrics:
            points = curve(result, model, method, metric)
            for ratio in ratios:
                row[f"{metric}@{ratio:g}"] = value_at(points, ratio)
        table.append(row)
    return table


def trained_vs_inference(result: StudyResult, metric: str = "cider") -> list[dict[str, Any]]:
    """Models trained with pruning beside the same backbone pruned only at inference.

    A model trained with method M (seed 0) is compared, ratio by ratio, to the
    backbone's inference-only model trained from scratch with the same token count
    (seed 0) pruned with
    M, or, when M cannot be applied to a model trained without it (``learned``:
    its scorer is only trained with pruning), with that model's best method.
    """
    table = []
    for model, info in result.models.items():
        method = info.get("trained_with", "none")
        if method == "none":
            continue
        base = next((m for m, i in result.models.items()
                     if i["backbone"] == info["backbone"] and i.get("trained_with") == "none"
                     and i["tokens"] == info["tokens"]
                     and i.get("start", "scratch") == "scratch"), None)
        if base is None:
            continue
        compared = method if method in methods_of(result, base) else best_method(result, base)
        inference = curve(result, base, compared, metric, seed=0)
        seeds = {p.ratio: p for p in curve(result, base, compared, metric)}
        for point in curve(result, model, method, metric):
            across = seeds.get(point.ratio)
            table.append({"backbone": info["backbone"], "trained with": method,
                          "inference-only method": compared, "ratio": point.ratio,
                          "trained with pruning": point.mean,
                          "pruned at inference only": value_at(inference, point.ratio),
                          "inference seed spread": across.high - across.low if across else None,
                          "inference seeds": across.n_seeds if across else 0})
    return table


def trained_scorers(result: StudyResult, metric: str = "cider") -> dict[str, dict[str, float]]:
    """Per backbone, the scorers it was trained with and their mean ``metric`` over the
    pruned ratios (each trained model pruned with its own scorer).

    Only backbones trained with two or more scorers appear: this compares scorers
    that were all part of training, which the inference-only curves cannot do for
    ``learned``.
    """
    by_backbone: dict[str, dict[str, float]] = {}
    for model, info in result.models.items():
        method = info.get("trained_with", "none")
        if method == "none":
            continue
        points = [p for p in curve(result, model, method, metric) if p.ratio > 0]
        if points:
            by_backbone.setdefault(info["backbone"], {})[method] = statistics.fmean(
                p.mean for p in points)
    return {b: scores for b, scores in by_backbone.items() if len(scores) >= 2}


@dataclass(frozen=True)
class Spread:
    """One number measured on several training seeds: its mean and its range.

    Attributes:
        mean: Mean over seeds.
        low: Smallest seed's value.
        high: Largest seed's value.
        n_seeds: How many seeds were measured.
    """

    mean: float
    low: float
    high: float
    n_seeds: int

    @property
    def width(self) -> float:
        """``high - low``: how far apart the seeds are (0 for one seed)."""
        return self.high - self.low


def spread_of(values: list[float]) -> Spread:
    """The :class:`Spread` of per-seed values.

    Raises:
        ValueError: If ``values`` is empty.
    """
    if not values:
        raise ValueError("spread_of: no values (no seed measured this setting)")
    return Spread(statistics.fmean(values), min(values), max(values), len(values))


def spread_over(items: Iterable[Any], read: Callable[[Any], float | None]) -> Spread:
    """The :class:`Spread` of ``read(item)`` over items (e.g. one captioner per seed).

    Items whose value is ``None`` are left out; if none has one, the spread is
    ``nan`` (a tiny ``ci`` captioner may, for instance, state no relation at all).
    """
    values = [value for value in map(read, items) if value is not None]
    return spread_of(values) if values else spread_of([float("nan")])


def spread_text(value: Spread | None, scale: float = 100, digits: int = 1) -> str | None:
    """``"mean (lowest-highest)"`` over seeds (in percent by default); the mean alone
    for one seed; ``None`` for ``None``."""
    if value is None:
        return None
    text = f"{value.mean * scale:.{digits}f}"
    if value.n_seeds > 1:
        text += f" ({value.low * scale:.{digits}f}-{value.high * scale:.{digits}f})"
    return text


def is_tie(a: Spread | CurvePoint, b: Spread | CurvePoint, noise: float = 0.0) -> bool:
    """Whether two settings cannot be ranked: their difference lies inside the seed spread.

    The difference of the means is compared with the larger of the two seed
    ranges (``high - low``) and with ``noise``, a spread measured elsewhere
    (pass one for settings trained on a single seed, whose own width is 0).

    Args:
        a: One setting's per-seed spread (a :class:`CurvePoint` works too).
        b: The other's.
        noise: A seed spread to assume at least (same unit as the values).

    Returns:
        ``True`` when ``|a.mean - b.mean| <= max(a.width, b.width, noise)``.
    """
    return abs(a.mean - b.mean) <= max(a.high - a.low, b.high - b.low, noise)


def seeds_of(result: StudyResult, model: str, split: str = "test") -> list[int]:
    """The training seeds measured for ``model``, sorted."""
    return sorted({row["seed"] for row in result.select(model=model, split=split)})


def retention(
    result: StudyResult, model: str, method: str, metric: str = "cider",
    *, placement: str = "memory", ratios: list[float] | None = None,
) -> Spread | None:
    """Share of the unpruned score kept under pruning, per training seed.

    For each seed: the mean over the pruned ratios (or ``ratios``) of
    ``value(ratio) / value(0)`` (:func:`mean_retention` of that seed's curve).
    Returns their :class:`Spread`, or ``None`` when no seed has both the
    unpruned and a pruned value.
    """
    values = []
    for seed in seeds_of(result, model):
        kept = mean_retention(curve(result, model, method, metric, placement=placement,
                                    seed=seed), ratios)
        if kept is not None:
            values.append(kept)
    return spread_of(values) if values else None


def method_scores(
    result: StudyResult, model: str, metric: str = "cider", *, placement: str = "memory",
) -> dict[str, Spread]:
    """Each pruning method's mean ``metric`` over the pruned ratios, per training seed.

    Returns:
        Method -> :class:`Spread` over seeds of the seed's mean over pruned ratios
        (methods without pruned values are left out), in study order.
    """
    scores = {}
    for method in methods_of(result, model, placement):
        values = []
        for seed in seeds_of(result, model):
            points = [p.mean for p in curve(result, model, method, metric,
                                            placement=placement, seed=seed) if p.ratio > 0]
            if points:
                values.append(statistics.fmean(points))
        if values:
            scores[method] = spread_of(values)
    return scores


def largest_spread(points: list[CurvePoint]) -> float:
    """The largest seed range of a curve relative to its mean: ``max (high - low) / mean``.

    0 for a single-seed curve or one without a positive mean.
    """
    return max(((p.high - p.low) / p.mean for p in points if p.mean > 0), default=0.0)


def rows_csv(result: StudyResult) -> str:
    """Every row as CSV text (one line per cell)."""
    if not result.rows:
        return ""
    fields = list(dict.fromkeys(k for row in result.rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(result.rows)
    return out.getvalue()
