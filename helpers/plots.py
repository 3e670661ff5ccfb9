"""Loss and accuracy curves for the report, saved as PNG under img/ with stable names.

`rapport_template.md` links `img/loss_curve.png` and `img/accuracy_curve.png`; `plot_history`
also saves the values plotted, `img/history.json`, so that the report check can match a
number read off a curve. Figures are
built with `matplotlib.figure.Figure` (not pyplot), so saving works without a display and
leaves a notebook's inline plots alone; show a saved plot in a notebook with
`IPython.display.Image(path)`.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from helpers.paths import img_dir
from helpers.training import History

LOSS_PLOT = "loss_curve.png"
ACCURACY_PLOT = "accuracy_curve.png"
HISTORY_FILE = "history.json"
DPI = 150
FIGSIZE = (7.0, 4.2)  # inches: 1050 x 630 pixels at 150 dpi
FONT_SIZES = {"title": 14, "label": 12, "ticks": 11, "legend": 11}


def _new_figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    return fig, fig.add_subplot()


def _style(ax: Axes, history: History, title: str, ylabel: str) -> None:
    """Title, labels, grid, legend, and a second x axis on top counting examples seen."""
    ax.set_title(title, fontsize=FONT_SIZES["title"])
    ax.set_xlabel("epoch", fontsize=FONT_SIZES["label"])
    ax.set_ylabel(ylabel, fontsize=FONT_SIZES["label"])
    ax.tick_params(labelsize=FONT_SIZES["ticks"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=FONT_SIZES["legend"])
    per_epoch = history.examples_per_epoch
    if per_epoch:
        top = ax.secondary_xaxis("top", functions=(lambda e: e * per_epoch,
                                                   lambda n: n / per_epoch))
        top.set_xlabel("examples seen", fontsize=FONT_SIZES["label"])
        top.tick_params(labelsize=FONT_SIZES["ticks"])


def _save(fig: Figure, name: str, path: str | os.PathLike | None) -> Path:
    path = Path(path) if path is not None else img_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _check(history: History) -> None:
    if not history.epoch_examples_seen:
        raise ValueError("The history has no finished epoch: train for at least one epoch "
                         "(train_classifier) before plotting.")


def plot_loss(history: History, path: str | os.PathLike | None = None) -> Path:
    """Training loss per batch, and train/validation loss per epoch; returns the PNG's path."""
    _check(history)
    per_epoch = history.examples_per_epoch
    epochs = range(1, len(history.train_loss) + 1)
    fig, ax = _new_figure()
    ax.plot([n / per_epoch for n in history.examples_seen], history.batch_loss,
            color="tab:blue", alpha=0.35, linewidth=1, label="training batches")
    if history.eval_examples_seen:
        at = [n / per_epoch for n in history.eval_examples_seen]
        ax.plot(at, history.eval_train_loss, color="tab:blue", linestyle="--", label="train (eval)")
        ax.plot(at, history.eval_val_loss, color="tab:orange", linestyle="--",
                label="validation (eval)")
    ax.plot(epochs, history.train_loss, "o-", color="tab:blue", label="train, end of epoch")
    ax.plot(epochs, history.val_loss, "s-", color="tab:orange", label="validation, end of epoch")
    ax.set_xlim(left=0)
    _style(ax, history, "Cross-entropy loss", "loss")
    return _save(fig, LOSS_PLOT, path)


def plot_accuracy(history: History, path: str | os.PathLike | None = None) -> Path:
    """Train and validation accuracy at the end of each epoch; returns the PNG's path."""
    _check(history)
    epochs = range(1, len(history.train_acc) + 1)
    fig, ax = _new_figure()
    ax.plot(epochs, history.train_acc, "o-", color="tab:blue", label="train")
    ax.plot(epochs, history.val_acc, "s-", color="tab:orange", label="validation")
    ax.set_xlim(0, len(history.train_acc) + 0.5)
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    _style(ax, history, "Accuracy (eval mode)", "accuracy")
    return _save(fig, ACCURACY_PLOT, path)


def plot_history(history: History) -> tuple[Path, Path]:
    """Both report plots: (img/loss_curve.png, img/accuracy_curve.png); the history they plot
    goes to img/history.json."""
    paths = plot_loss(history), plot_accuracy(history)
    history.save_json(img_dir() / HISTORY_FILE)
    return paths
