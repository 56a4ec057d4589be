"""Training curves like the paper's Figures 5-8, and its end-of-training log lines.

The paper plots training loss (left) and training token accuracy (right) per
epoch, then quotes the last four epochs of its ``tqdm`` log. The course draws
the same two panels from a run's history (:mod:`ptlib.train.history`) and adds
the validation curves the paper does not show: the gap between the two is the
point of chapter 6.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ptlib.viz import style


def _column(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Epochs and values of one history column, skipping epochs where it was not measured."""
    epochs, values = [], []
    for row in history:
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            epochs.append(int(row["epoch"]))
            values.append(float(value))
    return epochs, values


def _check_history(history: Sequence[Mapping[str, Any]]) -> None:
    if not history:
        raise ValueError("history is empty: train at least one epoch first")
    for index, row in enumerate(history):
        for key in ("epoch", "train_loss", "train_token_acc"):
            if key not in row:
                raise ValueError(
                    f"history[{index}] has no {key!r}; pass the rows of a training history "
                    "(FitResult.history, TrainedRun.history or ptlib.train.read_history)"
                )


def draw_training_curves(
    history: Sequence[Mapping[str, Any]], title: str = "", *, backbone: str | None = None
) -> Figure:
    """Loss (left) and token accuracy (right) per epoch, training and validation.

    Training is a solid line, validation a dashed one, both in the backbone's
    colour (:func:`ptlib.viz.style.backbone_colour`) when ``backbone`` is given.

    Args:
        history: One row per epoch with ``epoch``, ``train_loss``,
            ``train_token_acc`` and, when measured, ``val_loss``, ``val_token_acc``.
        title: The figure title (e.g. the backbone), wrapped to the column.
        backbone: The run's backbone (``"vit"``, ``"convnext"``, ...), for its colour.

    Returns:
        A figure with two axes; accuracy is drawn in percent.

    Raises:
        ValueError: If the history is empty or a row lacks a training column, or
            the backbone has no colour in the palette.
    """
    _check_history(history)
    colour = style.backbone_colour(backbone) if backbone else style.series_colour(0)
    fig, (loss_ax, acc_ax) = style.subplots(1, 2, height=2.9)
    with style.style_context():
        for ax, keys, scale in ((loss_ax, ("train_loss", "val_loss"), 1.0),
                                (acc_ax, ("train_token_acc", "val_token_acc"), 100.0)):
            for key, label, line, marker in ((keys[0], "training", "-", "o"),
                                             (keys[1], "validation", "--", "s")):
                epochs, values = _column(history, key)
                if values:
                    ax.plot(epochs, [scale * v for v in values], linestyle=line, marker=marker,
                            markersize=3, color=colour, label=label)
        loss_ax.set(xlabel="epoch", ylabel="cross-entropy per token", title="loss")
        acc_ax.set(xlabel="epoch", ylabel="next-token accuracy (%)",
                   title="token accuracy (teacher forcing)")
        for ax in (loss_ax, acc_ax):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend()
        if title:
            fig.suptitle(style.wrap(title, style.TEXT_WIDTH_IN, style.FONT_SIZES["title"]))
    return fig


def format_epoch_log(
    history: Sequence[Mapping[str, Any]], epochs: int | None = None, last: int = 4
) -> str:
    """The last epochs of a history as log lines, like the paper's Figures 6 and 8.

    Each line gives the epoch, optimizer steps, seconds and images per second,
    the training token accuracy and loss (the paper's ``acc`` and ``loss``),
    and the validation ones where they were measured.

    Args:
        history: One row per epoch (see :func:`draw_training_curves`).
        epochs: The planned number of epochs (default: the last epoch in ``history``).
        last: How many final epochs to show.

    Returns:
        One line per epoch, joined with newlines.
    """
    _check_history(history)
    if last < 1:
        raise ValueError(f"last={last}: show at least one epoch")
    total = epochs if epochs is not None else int(history[-1]["epoch"])
    lines = []
    previous_step = 0
    steps = {}
    for row in history:
        step = int(row.get("step", 0))
        steps[int(row["epoch"])] = step - previous_step
        previous_step = step
    for row in history[-last:]:
        epoch = int(row["epoch"])
        line = (
            f"Epoch {epoch}/{total}  {steps[epoch]} steps  "
            f"{float(row.get('seconds', 0.0)):.1f} s  "
            f"{float(row.get('images_per_s', 0.0)):.1f} images/s  "
            f"acc={100 * float(row['train_token_acc']):.2f}%, loss={float(row['train_loss']):.4f}"
        )
        if isinstance(row.get("val_token_acc"), int | float):
            line += (f"  | val acc={100 * float(row['val_token_acc']):.2f}%, "
                     f"val loss={float(row['val_loss']):.4f}")
        lines.append(line)
    return "\n".join(lines)
