"""Quality-vs-prune-ratio curves of the pruning study (chapter 7)."""

from __future__ import annotations

from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from ptlib.experiments.pruning_study import StudyResult
from ptlib.experiments.study_report import METRIC_LABELS, curve, methods_of


def plot_study_curves(
    result: StudyResult,
    metric: str = "cider",
    *,
    models: list[str] | None = None,
    placement: str = "memory",
    split: str = "test",
) -> Figure:
    """One panel per model, one line per pruning method; shading spans the seeds.

    Args:
        result: The study.
        metric: A row field, e.g. ``"cider"``, ``"exact_set"``, ``"kept_object_recall"``.
        models: Which models (default: every model trained without pruning).
        placement: ``"memory"`` or ``"encoder"``.
        split: ``"test"`` or ``"compositional"``.

    Raises:
        ValueError: If no model has rows for that placement and split.
    """
    if models is None:
        models = [m for m, info in result.models.items() if info.get("trained_with") == "none"]
    models = [m for m in models if methods_of(result, m, placement)
              and result.select(model=m, split=split, placement=placement)]
    if not models:
        raise ValueError(f"no study rows for placement={placement!r}, split={split!r}")
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.3), sharey=True,
                             squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for method in methods_of(result, model, placement):
            points = curve(result, model, method, metric, placement=placement, split=split)
            ratios = [p.ratio for p in points]
            ax.plot(ratios, [p.mean for p in points], marker="o", label=method)
            if any(p.n_seeds > 1 for p in points):
                ax.fill_between(ratios, [p.low for p in points], [p.high for p in points],
                                alpha=0.2)
        info = result.models[model]
        ax.set_title(f"{model} ({info['tokens']} tokens, {placement})", fontsize=10)
        ax.set_xlabel("prune ratio")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{METRIC_LABELS.get(metric, metric)} ({split})")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig
