"""Quality-vs-prune-ratio curves of the pruning study (chapter 7)."""

from __future__ import annotations

from matplotlib.figure import Figure

from ptlib.experiments.pruning_study import StudyResult
from ptlib.experiments.study_report import METRIC_LABELS, curve, methods_of
from ptlib.viz import style


def plot_study_curves(
    result: StudyResult,
    metric: str = "cider",
    *,
    models: list[str] | None = None,
    placement: str = "memory",
    split: str = "test",
    ncols: int = 2,
) -> Figure:
    """One panel per model, one line per pruning method; shading spans the seeds.

    Every method has its colour from :func:`ptlib.viz.style.method_colour` in
    every panel (encoder placement: the same colour, dashed), and every panel
    has its own legend naming exactly the lines it draws.

    Args:
        result: The study.
        metric: A row field, e.g. ``"cider"``, ``"exact_set"``, ``"kept_object_recall"``.
        models: Which models (default: every model trained without pruning).
        placement: ``"memory"`` or ``"encoder"``.
        split: ``"test"`` or ``"compositional"``.
        ncols: Panels per row (models wrap onto more rows; the figure fits the column).

    Raises:
        ValueError: If no model has rows for that placement and split.
    """
    if models is None:
        models = [m for m, info in result.models.items() if info.get("trained_with") == "none"]
    models = [m for m in models if methods_of(result, m, placement)
              and result.select(model=m, split=split, placement=placement)]
    if not models:
        raise ValueError(f"no study rows for placement={placement!r}, split={split!r}")
    ncols = max(1, min(ncols, len(models)))
    nrows = -(-len(models) // ncols)
    fig, axes = style.subplots(nrows, ncols, width_fraction=min(1.0, 0.5 * ncols + 0.05),
                               height=2.7 * nrows, sharey=True, squeeze=False)
    label = f"{METRIC_LABELS.get(metric, metric)} ({split})"
    with style.style_context():
        for index, ax in enumerate(axes.flat):
            if index >= len(models):
                ax.remove()
                continue
            model = models[index]
            for method in methods_of(result, model, placement):
                points = curve(result, model, method, metric, placement=placement, split=split)
                ratios = [p.ratio for p in points]
                line = style.method_style(method, placement)
                ax.plot(ratios, [p.mean for p in points], **line)
                if any(p.n_seeds > 1 for p in points):
                    ax.fill_between(ratios, [p.low for p in points], [p.high for p in points],
                                    color=line["color"], alpha=0.15, linewidth=0)
            info = result.models[model]
            ax.set_title(f"{model} ({info['tokens']} tokens, {placement})")
            ax.set_xlabel("prune ratio")
            if index % ncols == 0:
                ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.legend(loc="best")
    return fig
