"""Sanity checks to run before a long training, for any classifier (ResNet, GPT-2 classifier).

    initial_loss_check   a fresh classifier's loss should be about log(C)
    overfit_one_batch    a model that can learn anything can learn one small batch by heart
    lr_finder            exponential learning-rate sweep: pick a rate before the loss blows up

Each function takes `forward_fn(model, batch) -> (logits, labels)`, with logits of shape
(batch, C). The default, `inputs_labels_forward`, suits batches (inputs, labels), e.g. images
for the ResNet. For the GPT-2 classifier, whose batches are (input_ids, labels, last_idx):

    def gpt_forward(model, batch):
        input_ids, labels, last_idx = batch
        return last_token_logits(model(input_ids), last_idx), labels

Batches are moved to the model's device first. `overfit_one_batch` and `lr_finder` train the
model, then put its weights, the optimizer and train/eval mode back as they were
(`restore=False` keeps the trained weights; restoring holds one copy of the weights in
memory meanwhile). Plots go to img/ (see helpers.paths).
"""

from __future__ import annotations

import bisect
import copy
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from helpers.class_logits import check_class_logits, class_logits_problem
from helpers.devices import batch_to_device, model_device
from helpers.model_mode import model_mode
from helpers.paths import img_dir

Batch = Sequence[Any]
ForwardFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, torch.Tensor]]
StepFn = Callable[[nn.Module, Batch, torch.optim.Optimizer], float]

PROGRESS_DELAY_S = 2.0  # progress bars appear only for loops that last longer than this
MAX_LR_FINDER_STEPS = 500
PLOT_DPI = 150


def inputs_labels_forward(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Default forward: a batch (inputs, labels, ...) gives (model(inputs), labels)."""
    return model(batch[0]), batch[1]


def _on_model_device(model: nn.Module, batch: Batch) -> Batch:
    return batch_to_device(batch, model_device(model))


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    check_class_logits(logits, len(labels), source="forward_fn")
    return F.cross_entropy(logits.float(), labels)


def _default_step(forward_fn: ForwardFn) -> StepFn:
    def step(model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = _cross_entropy(*forward_fn(model, batch))
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameter (requires_grad=True): unfreeze "
                         "what should train, e.g. with freeze_and_activate_lora and a new head.")
    return params


@contextmanager
def _restoring(model: nn.Module, optimizer: torch.optim.Optimizer, restore: bool):
    """Train mode inside; the model's mode back afterwards and, if `restore`, its weights and
    the optimizer."""
    weights = copy.deepcopy(model.state_dict()) if restore else None
    optimizer_state = copy.deepcopy(optimizer.state_dict()) if restore else None
    with model_mode(model, True):
        try:
            yield
        finally:
            if restore:
                model.load_state_dict(weights)
                optimizer.load_state_dict(optimizer_state)


def _save_plot(x: Sequence[float], y: Sequence[float], *, title: str, xlabel: str,
               filename: str, log_x: bool = False, mark: tuple[float, float] | None = None,
               mark_label: str = "") -> Path:
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, y, color="tab:blue")
    if mark is not None:
        ax.plot(*mark, "o", color="tab:red", label=mark_label)
        ax.legend()
    if log_x:
        ax.set_xscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel="cross-entropy loss")
    ax.grid(alpha=0.3)
    path = img_dir() / filename
    fig.savefig(path, dpi=PLOT_DPI)
    return path


# --- initial loss ---------------------------------------------------------------------------

@dataclass
class InitialLossReport:
    """The measured initial loss against log(C), and a verdict (`ok`) with its explanation."""

    loss: float
    expected: float  # log(num_classes)
    abs_deviation: float
    rel_deviation: float  # abs_deviation / expected
    ok: bool
    message: str
    num_classes: int
    tolerance: float

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "CHECK THIS"
        return (f"Initial loss {self.loss:.4f}, expected log({self.num_classes}) = "
                f"{self.expected:.4f}: off by {self.abs_deviation:.4f} ({self.rel_deviation:.1%}, "
                f"tolerance {self.tolerance:.0%}) -> {verdict}\n{self.message}")


def _loss_or_nan(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Cross-entropy, or nan when shapes or label values make it meaningless (checked first:
    an out-of-range label on a GPU is a device-side assert, not an exception)."""
    usable = (class_logits_problem(logits, len(labels)) is None
              and labels.min() >= 0 and labels.max() < logits.shape[1])
    return _cross_entropy(logits, labels).item() if usable else math.nan


def _initial_loss_problem(logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
                          loss: float, expected: float, tolerance: float) -> str | None:
    """What is wrong with a fresh model's logits or loss, or None when it looks right."""
    shape_problem = class_logits_problem(logits, len(labels), source="forward_fn")
    if shape_problem:
        return shape_problem
    if logits.shape[1] != num_classes:
        return (f"The model outputs {logits.shape[1]} logits per example but there are "
                f"{num_classes} classes: the head's out_features must be the number of classes.")
    if labels.min() < 0 or labels.max() >= num_classes:
        return (f"Labels go from {labels.min().item()} to {labels.max().item()}; they must be "
                f"class indices 0..{num_classes - 1}.")
    if (logits >= 0).all() and torch.allclose(logits.float().sum(1),
                                              torch.ones_like(labels, dtype=torch.float),
                                              atol=1e-3):
        return ("The outputs are already probabilities (each row sums to 1): softmax is applied "
                "twice, since cross_entropy applies its own log-softmax. Return raw logits.")
    if abs(loss - expected) <= tolerance * expected:
        return None
    spread = logits.float().std().item()
    if loss > expected:
        return (f"The loss is too high: the logits are far from equal (std {spread:.3g}), so the "
                "fresh model is confidently wrong. Usual causes: the head's init (draw its "
                "weights with a small std, 0.01 or less, or zeros, and a zero bias); activations "
                "that grow through the network (missing normalisation); logits multiplied by a "
                "scale or temperature; labels that do not match the inputs.")
    return ("The loss is below log(C), so the model already predicts these labels: it is not "
            "fresh (trained or pretrained head), the labels leak into the inputs, or the batch "
            "is too small to tell (use a few dozen examples).")


def initial_loss_check(model: nn.Module, batch: Batch, num_classes: int, *,
                       forward_fn: ForwardFn | None = None,
                       tolerance: float = 0.1) -> InitialLossReport:
    """Cross-entropy of a fresh `model` on `batch`, compared with log(num_classes).

    A fresh classifier should predict every class with about the same probability 1/C, which
    gives a loss of log(C) (0.693 for 2 classes, 5.298 for 200). `ok` when the loss is within
    `tolerance` (relative) of log(C) and the logits look like logits. Runs once in eval mode
    (no dropout; batch norm with its running statistics) without gradients, then puts the
    model back in the mode it was in. Print the report for a readable verdict.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
    forward_fn = forward_fn or inputs_labels_forward
    with model_mode(model, False), torch.no_grad():
        logits, labels = forward_fn(model, _on_model_device(model, batch))
    expected = math.log(num_classes)
    loss = _loss_or_nan(logits, labels)
    problem = _initial_loss_problem(logits, labels, num_classes, loss, expected, tolerance)
    deviation = abs(loss - expected)
    return InitialLossReport(
        loss=loss, expected=expected, abs_deviation=deviation, rel_deviation=deviation / expected,
        ok=problem is None, num_classes=num_classes, tolerance=tolerance,
        message=problem or "The fresh model predicts every class about equally, as it should.",
    )


# --- overfit one batch ----------------------------------------------------------------------

@dataclass
class OverfitReport:
    """Losses while training on one batch (each measured before that step's update)."""

    losses: list[float]
    target_loss: float
    ok: bool
    message: str

    @property
    def initial_loss(self) -> float:
        return self.losses[0]

    @property
    def final_loss(self) -> float:
        return self.losses[-1]

    def plot(self, filename: str = "overfit_one_batch.png") -> Path:
        """Save the loss curve under img/ and return its path."""
        return _save_plot(range(len(self.losses)), self.losses, title="Overfit one batch",
                          xlabel="step", filename=filename)

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "CHECK THIS"
        return (f"Overfit one batch: loss {self.initial_loss:.4f} -> {self.final_loss:.4f} in "
                f"{len(self.losses)} steps (target {self.target_loss}) -> {verdict}\n"
                f"{self.message}")


def _overfit_verdict(losses: list[float], target_loss: float, lr: float) -> tuple[bool, str]:
    first, last = losses[0], losses[-1]
    if not math.isfinite(last):
        return False, (f"The loss became {last}: the learning rate ({lr:g}) is too high for "
                       "this model; divide it by 10.")
    if last <= target_loss:
        return True, f"The model learned the batch by heart in {len(losses)} steps."
    if last > 0.9 * first:
        return False, (
            f"The loss does not fall ({first:.4f} -> {last:.4f}). Usual causes: the parameters "
            "that should learn are frozen or missing from the optimizer; zero_grad / backward / "
            "step missing or in the wrong order; a learning rate too small (now "
            f"{lr:g}); inputs and labels that do not match."
        )
    return False, (
        f"The loss falls ({first:.4f} -> {last:.4f}) but does not reach {target_loss} in "
        f"{len(losses)} steps: give it more steps or a larger learning rate (now {lr:g}). "
        "Dropout and weight decay also keep a model from memorising: turn them off for this check."
    )


def overfit_one_batch(model: nn.Module, batch: Batch, *, forward_fn: ForwardFn | None = None,
                      step_fn: StepFn | None = None,
                      optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
                      steps: int = 200, target_loss: float = 0.05, restore: bool = True,
                      progress: bool = True) -> OverfitReport:
    """Train on the same small batch until its loss is below `target_loss` (at most `steps`).

    A model, loss and optimizer that work drive the loss of one batch of a few examples to
    about zero; if they cannot, a longer training will not help. The model trains in train
    mode; `step_fn(model, batch, optimizer) -> loss` replaces the default step (cross-entropy
    of `forward_fn`, backward, optimizer step), e.g. your own `train_step`. The default
    optimizer is AdamW(lr, no weight decay) over the trainable parameters.
    """
    optimizer = optimizer or torch.optim.AdamW(_trainable(model), lr=lr, weight_decay=0.0)
    step_fn = step_fn or _default_step(forward_fn or inputs_labels_forward)
    batch = _on_model_device(model, batch)
    losses: list[float] = []
    with _restoring(model, optimizer, restore):
        with tqdm(range(steps), desc="Overfit one batch", delay=PROGRESS_DELAY_S,
                  disable=not progress, leave=False) as bar:
            for _ in bar:
                losses.append(step_fn(model, batch, optimizer))
                bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
                if losses[-1] <= target_loss or not math.isfinite(losses[-1]):
                    break
    ok, message = _overfit_verdict(losses, target_loss, optimizer.param_groups[0]["lr"])
    return OverfitReport(losses=losses, target_loss=target_loss, ok=ok, message=message)


# --- learning-rate finder -------------------------------------------------------------------

@dataclass
class LRFinderResult:
    """The sweep's learning rates, smoothed and raw losses, and the suggested learning rate."""

    lrs: list[float]
    losses: list[float]  # smoothed
    raw_losses: list[float]
    suggested_lr: float
    diverged: bool
    plot_path: Path | None = None

    def plot(self, filename: str = "lr_finder.png") -> Path:
        """Save smoothed loss against learning rate (log scale) under img/; return its path."""
        at = self.lrs.index(self.suggested_lr)
        return _save_plot(self.lrs, self.losses, title="Learning-rate finder",
                          xlabel="learning rate", filename=filename, log_x=True,
                          mark=(self.suggested_lr, self.losses[at]),
                          mark_label=f"suggested lr {self.suggested_lr:.2g}")

    def __str__(self) -> str:
        stop = "the loss diverged" if self.diverged else "end of the range"
        lowest = min(range(len(self.losses)), key=self.losses.__getitem__)
        text = (f"LR finder: lr {self.lrs[0]:.2g} -> {self.lrs[-1]:.2g} in {len(self.lrs)} steps "
                f"(stopped: {stop}); lowest smoothed loss {self.losses[lowest]:.4f} at lr "
                f"{self.lrs[lowest]:.2g}; suggested lr {self.suggested_lr:.2g} "
                "(about a tenth of it)")
        return text + (f"\nPlot: {self.plot_path}" if self.plot_path else "")


def _endless(batches: Batch | Iterable[Batch]) -> Iterator[Batch]:
    """One batch forever, or the batches of an iterable (a DataLoader, a list) over and over."""
    if (isinstance(batches, Sequence) and len(batches) > 0
            and all(isinstance(part, torch.Tensor) for part in batches)):
        yield from itertools.repeat(batches)
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("`batches` gave no batch (or a one-shot iterator ran out): pass a "
                             "single batch, a list of batches or a DataLoader.")


def lr_finder(model: nn.Module, batches: Batch | Iterable[Batch], *,
              forward_fn: ForwardFn | None = None,
              optimizer: torch.optim.Optimizer | None = None, start_lr: float = 1e-7,
              end_lr: float = 10.0, num_steps: int = 100, smoothing: float = 0.9,
              divergence_factor: float = 4.0, restore: bool = True, progress: bool = True,
              plot: bool = True, filename: str = "lr_finder.png") -> LRFinderResult:
    """Train with a learning rate growing exponentially from `start_lr` to `end_lr`.

    The loss first barely moves (lr too small), then falls, then blows up (lr too large). It
    is smoothed with an exponential moving average (`smoothing`, bias-corrected; 0.9 averages
    about 10 steps, raise it to 0.98 for long, noisy sweeps) and the sweep stops early once
    the smoothed loss exceeds `divergence_factor` times its minimum. The suggestion is a
    tenth of the learning rate at the smoothed minimum (or `start_lr` if that is lower): the
    loss still falls fast there, with a margin before divergence.

    `batches` is one batch, a list of batches or a DataLoader (cycled if it has fewer than
    `num_steps` batches). The default optimizer is AdamW over the trainable parameters.
    Plots to img/`filename` unless `plot=False`.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"Need 0 < start_lr < end_lr, got {start_lr} and {end_lr}.")
    if not 5 <= num_steps <= MAX_LR_FINDER_STEPS:
        raise ValueError(f"num_steps must be between 5 and {MAX_LR_FINDER_STEPS}, got "
                         f"{num_steps}: a few hundred steps are enough for a sweep.")
    optimizer = optimizer or torch.optim.AdamW(_trainable(model), lr=start_lr)
    step = _default_step(forward_fn or inputs_labels_forward)
    growth = (end_lr / start_lr) ** (1 / (num_steps - 1))
    lrs: list[float] = []
    raw: list[float] = []
    smoothed: list[float] = []
    average, best, diverged = 0.0, math.inf, False
    with _restoring(model, optimizer, restore):
        stream = _endless(batches)
        with tqdm(range(num_steps), desc="LR finder", delay=PROGRESS_DELAY_S,
                  disable=not progress, leave=False) as bar:
            for i in bar:
                lr = start_lr * growth**i
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = step(model, _on_model_device(model, next(stream)), optimizer)
                average = smoothing * average + (1 - smoothing) * loss
                lrs.append(lr)
                raw.append(loss)
                smoothed.append(average / (1 - smoothing ** (i + 1)))
                bar.set_postfix(lr=f"{lr:.2g}", loss=f"{smoothed[-1]:.4f}", refresh=False)
                if not math.isfinite(smoothed[-1]) or smoothed[-1] > divergence_factor * best:
                    diverged = True
                    break
                best = min(best, smoothed[-1])
    if not math.isfinite(smoothed[-1]):  # keep the curve finite: drop the step that overflowed
        lrs, raw, smoothed = lrs[:-1], raw[:-1], smoothed[:-1]
    if not smoothed:
        raise ValueError(f"The loss was not finite at the first step (lr {start_lr:g}): check "
                         "the model and data with initial_loss_check first.")
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
    suggested = lrs[max(bisect.bisect_right(lrs, lrs[lowest] / 10) - 1, 0)]
    result = LRFinderResult(lrs=lrs, losses=smoothed, raw_losses=raw, suggested_lr=suggested,
                            diverged=diverged)
    if plot:
        result.plot_path = result.plot(filename)
    return result
