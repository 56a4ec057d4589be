"""Tables and sentences from the pruning study's rows (chapter 7's conclusions).

Every function reads a :class:`~ptlib.experiments.pruning_study.StudyResult`;
nothing here measures. Curves average over training seeds and keep the spread
(min, max), so a reader sees how much of a difference is noise.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from typing import Any

from ptlib.experiments.pruning_study import StudyResult

METRIC_LABELS: dict[str, str] = {
    "cider": "CIDEr-D",
    "bleu4": "BLEU-4",
    "exact_set": "exact object-set accuracy",
    "shape_accuracy": "shape accuracy",
    "hallucination_rate": "hallucination rate",
    "kept_object_recall": "kept-object recall",
}
"""Row field -> the name used in tables and sentences."""

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
    backbone's inference-only model with the same token count (seed 0) pruned with
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
                     and i["tokens"] == info["tokens"]), None)
        if base is None:
            continue
        compared = method if method in methods_of(result, base) else best_method(result, base)
        inference = curve(result, base, compared, metric, seed=0)
        for point in curve(result, model, method, metric):
            table.append({"backbone": info["backbone"], "trained with": method,
                          "inference-only method": compared, "ratio": point.ratio,
                          "trained with pruning": point.mean,
                          "pruned at inference only": value_at(inference, point.ratio)})
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


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def conclusions(result: StudyResult) -> list[str]:
    """The study's verdicts as sentences, each computed from the rows.

    Covers: which model keeps more of its quality under pruning (on CIDEr-D and
    on exact object-set accuracy), from which ratio each model's drop exceeds
    :data:`DROP_THRESHOLD`, which scorer is best per model, the seed spread,
    whether training with pruning beats pruning only at inference, and which
    scorer is best among those used in training.
    """
    sentences = []
    inference_models = [m for m, i in result.models.items() if i.get("trained_with") == "none"]
    for metric in ("cider", "exact_set"):
        retained = {}
        for model in inference_models:
            method = best_method(result, model, metric)
            if method is not None:
                value = mean_retention(curve(result, model, method, metric))
                if value is not None:
                    retained[model] = (value, method)
        if len(retained) >= 2:
            ranked = sorted(retained, key=lambda m: retained[m][0], reverse=True)
            parts = ", ".join(
                f"{m} ({result.models[m]['tokens']} tokens, {retained[m][1]}) "
                f"{_pct(retained[m][0])}" for m in ranked)
            sentences.append(
                f"On {METRIC_LABELS[metric]}, averaged over the pruned ratios, the models keep "
                f"this share of their unpruned score with their best scorer: {parts}; "
                f"{ranked[0]} degrades least and {ranked[-1]} most.")
    for model in inference_models:
        method = best_method(result, model)
        if method is None:
            continue
        points = curve(result, model, method)
        drop = first_drop(points)
        spread = max((p.high - p.low) / p.mean for p in points if p.mean) if points else 0.0
        seeds = max(p.n_seeds for p in points)
        text = (f"{model} with {method} pruning: CIDEr-D first falls more than "
                f"{_pct(DROP_THRESHOLD)} below its unpruned value at ratio {drop:g}"
                if drop is not None else
                f"{model} with {method} pruning: CIDEr-D never falls more than "
                f"{_pct(DROP_THRESHOLD)} below its unpruned value up to ratio "
                f"{max(p.ratio for p in points):g}")
        if seeds > 1:
            text += f" (largest spread between {seeds} seeds: {_pct(spread)} of the mean)"
        sentences.append(text + ".")
    for model in inference_models:
        order = sorted(methods_of(result, model),
                       key=lambda m: -(mean_retention(curve(result, model, m)) or 0))
        if len(order) >= 2:
            sentences.append(f"Best scorer for {model} (mean CIDEr-D over pruned ratios): "
                             f"{order[0]}; worst: {order[-1]}.")
    for model in inference_models:
        methods = methods_of(result, model)
        recall = {m: mean_retention(curve(result, model, m, "kept_object_recall")) for m in methods}
        quality = {m: mean_retention(curve(result, model, m)) for m in methods}
        recall = {m: v for m, v in recall.items() if v is not None}
        if len(recall) >= 2 and all(quality.get(m) is not None for m in recall):
            keeps = max(recall, key=recall.__getitem__)
            writes = max(recall, key=lambda m: quality[m])
            verdict = ("is also the one that keeps the most CIDEr-D" if keeps == writes else
                       f"is not the one that keeps the most CIDEr-D ({writes})")
            sentences.append(
                f"For {model}, the scorer that keeps the most object area ({keeps}, "
                f"{_pct(recall[keeps])} kept-object recall on average over the pruned "
                f"ratios) {verdict}.")
    comparison = trained_vs_inference(result)
    for backbone, trained in dict.fromkeys((r["backbone"], r["trained with"]) for r in comparison):
        rows = [r for r in comparison if r["backbone"] == backbone and r["ratio"] > 0
                and r["trained with"] == trained and r["pruned at inference only"] is not None]
        if rows:
            wins = sum(r["trained with pruning"] > r["pruned at inference only"] for r in rows)
            sentences.append(
                f"{backbone}: the model trained with {rows[0]['trained with']} pruning scores "
                f"higher CIDEr-D than the unpruned-trained model pruned at inference "
                f"({rows[0]['inference-only method']}) at {wins} of {len(rows)} pruned ratios.")
    for model, info in result.models.items():
        method = info.get("trained_with", "none")
        points = curve(result, model, method) if method != "none" else []
        if len(points) >= 2:
            peak = max(points, key=lambda p: p.mean)
            sentences.append(
                f"{model} scores its best CIDEr-D at ratio {peak.ratio:g} ({peak.mean:.2f}, "
                f"against {points[0].mean:.2f} unpruned and {points[-1].mean:.2f} at "
                f"{points[-1].ratio:g}): trained with pruning, it scores best pruned, "
                f"not unpruned." if peak.ratio > 0 else
                f"{model} scores its best CIDEr-D unpruned ({peak.mean:.2f}).")
    for backbone, scores in trained_scorers(result).items():
        ranked = sorted(scores, key=scores.__getitem__, reverse=True)
        parts = ", ".join(f"{m} {scores[m]:.2f}" for m in ranked)
        sentences.append(
            f"{backbone}, scorers used in training too (mean CIDEr-D over the pruned ratios, "
            f"each with its own scorer): {parts}; {ranked[0]} is best.")
    return sentences


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
