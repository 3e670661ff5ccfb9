import json

import matplotlib.pyplot as plt
import pytest
from matplotlib.image import imread

from helpers.paths import img_dir
from helpers.plots import (ACCURACY_PLOT, HISTORY_FILE, LOSS_PLOT, plot_accuracy, plot_history,
                           plot_loss)
from helpers.training import History

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _history(with_evals: bool = False) -> History:
    """Three epochs of 4 batches of 8 examples."""
    seen = list(range(8, 97, 8))
    history = History(
        batch_loss=[0.7 - 0.04 * i for i in range(12)], examples_seen=seen,
        train_loss=[0.6, 0.4, 0.3], val_loss=[0.65, 0.5, 0.45],
        train_acc=[0.6, 0.8, 0.9], val_acc=[0.55, 0.75, 0.85],
        epoch_examples_seen=[32, 64, 96], epoch_seconds=[1.0, 1.1, 0.9],
    )
    if with_evals:
        history.eval_examples_seen = [16, 48, 80]
        history.eval_train_loss = [0.68, 0.5, 0.35]
        history.eval_val_loss = [0.69, 0.55, 0.47]
    return history


def _assert_report_png(path, name):
    assert path == img_dir() / name and path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width = imread(path).shape[:2]
    assert 800 <= width <= 2000 and 450 <= height <= 1400


@pytest.mark.parametrize("with_evals", [False, True])
def test_plot_history_writes_both_report_pngs(with_evals):
    figures_before = plt.get_fignums()
    loss_path, accuracy_path = plot_history(_history(with_evals))
    _assert_report_png(loss_path, LOSS_PLOT)
    _assert_report_png(accuracy_path, ACCURACY_PLOT)
    assert plt.get_fignums() == figures_before  # nothing left open in pyplot


def test_plot_history_saves_the_values_plotted():
    history = _history(with_evals=True)
    plot_history(history)
    saved = json.loads((img_dir() / HISTORY_FILE).read_text())
    assert History.from_dict(saved) == history


def test_stable_names_and_custom_path(tmp_path):
    assert (LOSS_PLOT, ACCURACY_PLOT) == ("loss_curve.png", "accuracy_curve.png")
    path = plot_loss(_history(), tmp_path / "plots" / "mine.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_empty_history_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one epoch"):
        plot_accuracy(History())
