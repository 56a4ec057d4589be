"""Training-curve figures, the epoch log lines, and the confusion heatmap."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import pyplot as plt

from ptlib.viz import draw_confusion_matrix, draw_training_curves, format_epoch_log

HISTORY = [
    {"epoch": 1, "step": 10, "train_loss": 3.0, "train_token_acc": 0.40, "val_loss": 3.2,
     "val_token_acc": 0.35, "seconds": 12.0, "images_per_s": 50.0},
    {"epoch": 2, "step": 20, "train_loss": 2.0, "train_token_acc": 0.60, "val_loss": None,
     "val_token_acc": None, "seconds": 11.0, "images_per_s": 55.0},
    {"epoch": 3, "step": 30, "train_loss": 1.0, "train_token_acc": 0.90, "val_loss": 2.5,
     "val_token_acc": 0.50, "seconds": 10.0, "images_per_s": 60.0},
]


def test_curves_draw_training_and_measured_validation_points():
    fig = draw_training_curves(HISTORY, title="vit")
    loss_ax, acc_ax = fig.axes
    train_loss, val_loss = loss_ax.get_lines()
    assert list(train_loss.get_xdata()) == [1, 2, 3]
    assert list(train_loss.get_ydata()) == [3.0, 2.0, 1.0]
    assert list(val_loss.get_xdata()) == [1, 3]  # epoch 2 was not validated
    train_acc, val_acc = acc_ax.get_lines()
    assert list(train_acc.get_ydata()) == pytest.approx([40.0, 60.0, 90.0])
    assert list(val_acc.get_ydata()) == pytest.approx([35.0, 50.0])
    assert fig._suptitle.get_text() == "vit"
    plt.close(fig)


def test_curves_without_validation_draw_training_only():
    rows = [{k: v for k, v in row.items() if not k.startswith("val")} for row in HISTORY]
    fig = draw_training_curves(rows)
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 1]
    plt.close(fig)


def test_bad_history_is_named():
    with pytest.raises(ValueError, match="empty"):
        draw_training_curves([])
    with pytest.raises(ValueError, match=r"history\[0\] has no 'train_loss'"):
        format_epoch_log([{"epoch": 1, "train_token_acc": 0.5}])


def test_epoch_log_reads_like_the_paper():
    lines = format_epoch_log(HISTORY, epochs=10, last=2).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Epoch 2/10  10 steps  11.0 s  55.0 images/s")
    assert "acc=60.00%, loss=2.0000" in lines[0] and "val acc" not in lines[0]
    assert lines[1].endswith("acc=90.00%, loss=1.0000  | val acc=50.00%, val loss=2.5000")
    assert format_epoch_log(HISTORY).splitlines()[0].startswith("Epoch 1/3  10 steps")


def test_confusion_heatmap_prints_counts_and_checks_shape():
    counts = np.array([[5, 1], [0, 0]])
    fig = draw_confusion_matrix(["circle", "star"], counts, title="shape")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["5", "1", "0", "0"]
    shares = ax.images[0].get_array()
    assert shares[0, 0] == pytest.approx(5 / 6) and shares[1, 1] == 0.0  # empty row stays 0
    assert ax.get_title() == "shape"
    plt.close(fig)
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*\(2, 2\)"):
        draw_confusion_matrix(["a", "b"], np.zeros((2, 3)))
