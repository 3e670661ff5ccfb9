"""Training and evaluation loops for the spam classifier.

The lab's exercises are passed in, not written here:

- `step_fn(model, batch, optimizer) -> float`: one optimisation step on a batch, returning its
  loss (the student's `train_step`, notebook 05);
- `logits_fn(logits, last_idx) -> (batch, num_classes)`: the logits at each message's last
  real token (the student's `last_token_logits`, notebook 04).

Batches are `(input_ids, labels, last_idx)` (see `helpers.spam_data.SpamBatch`) and are moved
to the device before they reach those functions. Grading mode ($LORA_LAB_GRADING=1, see
`helpers.modes`) caps every loop to a few batches so that a training cell takes seconds.

Speed without changing the lab's code: `train_classifier` picks a precision per device
(`helpers.precision`: bf16 autocast of the forward passes where the hardware computes bf16,
frozen Linear weights kept in that dtype meanwhile), prints what it picked and keeps it in
`History.settings`; every choice can be overridden. Batching is the loader's business (see
`helpers.spam_data.spam_loaders`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from helpers import modes
from helpers.class_logits import check_class_logits
from helpers.devices import cpu_bf16_instructions, describe_device, model_device
from helpers.env_info import pick_device, set_seed
from helpers.fused_lora import fused_lora
from helpers.model_mode import model_mode
from helpers.precision import (
    DTYPE_NAMES,
    Precision,
    autocast_forward,
    frozen_weights_in,
    resolve_precision,
)
from helpers.spam_data import SpamBatch, describe_batching

# Imported from here by notebooks, tests and benchmarks written before helpers.precision.
__all__ = ["History", "LogitsFn", "Precision", "StepFn", "TrainSettings", "TrainingSettings",
           "autocast_forward", "batch_cap", "calc_accuracy_loader", "calc_loss_loader",
           "cpu_bf16_instructions", "evaluate", "frozen_weights_in", "resolve_precision",
           "train_classifier", "training_settings"]

StepFn = Callable[[nn.Module, SpamBatch, torch.optim.Optimizer], float]
LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainingSettings:
    """What `train_classifier` runs with (printed at the start, kept in `History.settings`)."""

    device: str
    device_detail: str      # describe_device(), e.g. 'cpu (2 threads, x86_64)'
    precision: str          # 'fp32', 'bf16' or 'fp16' (autocast)
    precision_reason: str
    frozen_weights: str     # 'fp32' or the dtype they are kept in during training
    train_batching: str
    eval_batching: str
    lora: str = "your LinearWithLoRA layers"  # or the fused equivalent (helpers.fused_lora)
    torch_version: str = torch.__version__

    def line(self) -> str:
        """The one-line summary printed before training."""
        autocast = f"{self.precision} autocast" if self.precision != "fp32" else "fp32"
        frozen = ("" if self.frozen_weights == "fp32"
                  else f", frozen Linear weights kept in {self.frozen_weights}")
        return (f"device {self.device_detail} | precision {autocast} "
                f"({self.precision_reason}){frozen} | LoRA: {self.lora} | train: "
                f"{self.train_batching} | eval: {self.eval_batching}")


def _frozen_cast(precision: Precision, frozen_weights: str | bool) -> bool:
    key = str(frozen_weights).strip().lower()
    if key not in ("auto", "true", "false", "fp32", "cast"):
        raise ValueError(f"frozen_weights={frozen_weights!r}: use 'auto' (cast while "
                         "autocasting), True/'cast' or False/'fp32'.")
    return precision.autocast and key in ("auto", "true", "cast")


def training_settings(train_loader: Iterable, val_loader: Iterable | None = None,
                      device: torch.device | str | None = None, precision: str = "auto",
                      frozen_weights: str | bool = "auto") -> tuple[TrainingSettings, Precision]:
    """The settings `train_classifier` would use, resolved for `device` (None: picked)."""
    device = pick_device(str(device) if device is not None else None)
    resolved = resolve_precision(precision, device)
    cast = _frozen_cast(resolved, frozen_weights)
    batching = describe_batching(train_loader)
    train = batching["text"]
    if batching["order"] == "shuffled" and batching["padding"] == "per batch":
        train += " (spam_loaders(bucket=True) pads less)"
    evaluation = describe_batching(val_loader)["text"] if val_loader is not None else "none"
    settings = TrainingSettings(
        device=str(device), device_detail=describe_device(device), precision=resolved.name,
        precision_reason=resolved.reason,
        frozen_weights=DTYPE_NAMES[resolved.dtype] if cast else "fp32",
        train_batching=train, eval_batching=evaluation,
    )
    return settings, resolved


def batch_cap(requested: int | None) -> int | None:
    """`requested` batches (None: all), capped to a few in grading mode."""
    cap = modes.max_batches()
    if cap is None:
        return requested
    return cap if requested is None else min(requested, cap)


def _spam_batch(batch, device: torch.device) -> SpamBatch:
    if len(batch) != 3:
        raise ValueError(f"A batch has {len(batch)} parts; loaders must yield "
                         "(input_ids, labels, last_idx), like helpers.spam_data's loaders.")
    return SpamBatch(*batch).to(device)


def evaluate(loader: Iterable, model: nn.Module, logits_fn: LogitsFn,
             device: torch.device | str | None = None,
             max_batches: int | None = None,
             precision: str | Precision = "fp32") -> tuple[float, float]:
    """(mean loss, accuracy) over the first `max_batches` batches (None: all), per example.

    Runs in eval mode without gradients and puts the model back in the mode it was in.
    Returns (nan, nan) for an empty loader. precision: "fp32" (default, exact), "auto",
    "bf16" or "fp16" to run the forward passes under autocast (see `resolve_precision`);
    the loss is always computed in float32.
    """
    device = torch.device(device) if device is not None else model_device(model)
    precision = resolve_precision(precision, device)
    loss_sum, correct, seen = 0.0, 0, 0
    with model_mode(model, False), torch.no_grad(), autocast_forward(model, precision, device):
        for batch in islice(loader, batch_cap(max_batches)):
            batch = _spam_batch(batch, device)
            logits = logits_fn(model(batch.input_ids), batch.last_idx)
            logits = check_class_logits(logits, len(batch.labels)).float()
            loss_sum += F.cross_entropy(logits, batch.labels, reduction="sum").item()
            correct += (logits.argmax(dim=-1) == batch.labels).sum().item()
            seen += len(batch.labels)
    if seen == 0:
        return math.nan, math.nan
    return loss_sum / seen, correct / seen


def calc_loss_loader(loader: Iterable, model: nn.Module, logits_fn: LogitsFn,
                     device: torch.device | str | None = None,
                     max_batches: int | None = None, precision: str | Precision = "fp32") -> float:
    """Mean cross-entropy loss per example over the loader (eval mode, no gradients)."""
    return evaluate(loader, model, logits_fn, device, max_batches, precision)[0]


def calc_accuracy_loader(loader: Iterable, model: nn.Module, logits_fn: LogitsFn,
                         device: torch.device | str | None = None,
                         max_batches: int | None = None,
                         precision: str | Precision = "fp32") -> float:
    """Fraction of messages classified correctly (eval mode, no gradients)."""
    return evaluate(loader, model, logits_fn, device, max_batches, precision)[1]


@dataclass
class History:
    """What happened during training; `to_dict()` is JSON-ready.

    Per batch (training mode, so dropout on): `batch_loss` and the running `examples_seen`.
    Per epoch (evaluated in eval mode after the epoch): train/val loss and accuracy, the
    examples seen so far and the seconds of the epoch's training loop (periodic evaluations
    included, the end-of-epoch one not). Every `eval_every` steps, if asked: train/val loss at
    `eval_examples_seen`. `settings`: device, precision and batching used (TrainingSettings).
    """

    batch_loss: list[float] = field(default_factory=list)
    examples_seen: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    epoch_examples_seen: list[int] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    eval_examples_seen: list[int] = field(default_factory=list)
    eval_train_loss: list[float] = field(default_factory=list)
    eval_val_loss: list[float] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # see TrainingSettings

    @property
    def examples_per_epoch(self) -> int:
        """Training examples seen in one epoch (0 before the first epoch ends)."""
        return self.epoch_examples_seen[0] if self.epoch_examples_seen else 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> History:
        return cls(**data)

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write the history as JSON (e.g. to reuse it for plots without training again)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path


@dataclass(frozen=True)
class TrainSettings:
    """Everything the epoch loop needs besides the model, the loaders and the optimizer."""

    num_epochs: int
    step_fn: StepFn
    logits_fn: LogitsFn
    device: torch.device
    precision: Precision
    eval_every: int | None = None
    eval_batches: int = 5
    train_batches: int | None = None  # per epoch, None: all (already capped in grading mode)
    total: int = 0                    # batches per epoch, for the progress bar
    progress: bool = True


def train_classifier(model: nn.Module, train_loader: Iterable, val_loader: Iterable,
                     optimizer: torch.optim.Optimizer, num_epochs: int, *,
                     step_fn: StepFn, logits_fn: LogitsFn,
                     device: torch.device | str | None = None,
                     eval_every: int | None = None, eval_batches: int = 5,
                     max_batches: int | None = None, seed: int | None = None,
                     progress: bool = True, precision: str = "auto",
                     frozen_weights: str | bool = "auto", fuse_lora: bool = False) -> History:
    """Train `model` for `num_epochs` with the student's `step_fn`; returns a `History`.

    device: None picks cuda, mps or cpu (see helpers.env_info.pick_device); the model is
    moved there. max_batches: training batches per epoch (None: all). eval_every: also record
    train and validation loss every that many steps, each on `eval_batches` batches (like the
    original lab's eval_iter). The end-of-epoch evaluation covers both loaders entirely.
    Grading mode caps every one of these loops. seed: passed to helpers.env_info.set_seed first.

    precision: "auto" (bf16 autocast where the device computes bf16 natively, else fp32),
    "fp32", "bf16" or "fp16"; it applies to the training steps and to the evaluations, see
    `helpers.precision.resolve_precision`. frozen_weights: "auto" keeps the frozen Linear
    weights in the autocast dtype during training (same numbers, less work), False keeps them
    float32. fuse_lora: train through `helpers.fused_lora` (each LoRA layer's frozen product
    and down-projection in one matrix product, the same function checked against your
    layers first; they are put back afterwards); False (default) runs your layers as written.
    The settings are printed first (with `progress`) and kept in `history.settings`.
    """
    if seed is not None:
        set_seed(seed)
    described, resolved = training_settings(train_loader, val_loader, device, precision,
                                            frozen_weights)
    device = torch.device(described.device)
    model.to(device)
    train_batches = batch_cap(max_batches)
    total = len(train_loader) if train_batches is None else min(len(train_loader), train_batches)
    settings = TrainSettings(num_epochs=num_epochs, step_fn=step_fn, logits_fn=logits_fn,
                             device=device, precision=resolved, eval_every=eval_every,
                             eval_batches=eval_batches, train_batches=train_batches,
                             total=total, progress=progress)
    frozen_dtype = resolved.dtype if described.frozen_weights != "fp32" else None
    fusing = fused_lora(model, resolved.dtype) if fuse_lora else nullcontext(None)
    with fusing as fused, frozen_weights_in(model, frozen_dtype):
        if fused is not None:
            described.lora = fused.describe()
        history = History(settings=asdict(described))
        if progress:
            tqdm.write(f"settings: {described.line()}")
        for epoch in range(1, num_epochs + 1):
            _train_epoch(model, train_loader, val_loader, optimizer, settings, history, epoch)
    return history


def _record_periodic_eval(model: nn.Module, train_loader: Iterable, val_loader: Iterable,
                          settings: TrainSettings, history: History) -> None:
    history.eval_examples_seen.append(history.examples_seen[-1])
    for loader, losses in ((train_loader, history.eval_train_loss),
                           (val_loader, history.eval_val_loss)):
        losses.append(calc_loss_loader(loader, model, settings.logits_fn, settings.device,
                                       settings.eval_batches, settings.precision))


def _train_epoch(model: nn.Module, train_loader: Iterable, val_loader: Iterable,
                 optimizer: torch.optim.Optimizer, settings: TrainSettings, history: History,
                 epoch: int) -> None:
    """One epoch of `settings.step_fn` steps, then the end-of-epoch evaluation."""
    seen = history.examples_seen[-1] if history.examples_seen else 0
    start = time.perf_counter()
    bar = tqdm(islice(train_loader, settings.train_batches), total=settings.total,
               unit="batch", desc=f"epoch {epoch}/{settings.num_epochs}",
               disable=not settings.progress)
    epoch_losses: list[float] = []
    with model_mode(model, True):
        for batch in bar:
            batch = _spam_batch(batch, settings.device)
            with autocast_forward(model, settings.precision, settings.device):
                loss = settings.step_fn(model, batch, optimizer)
            if not isinstance(loss, (float, int, torch.Tensor)):
                raise TypeError(f"step_fn returned {type(loss).__name__}; it must return the "
                                "batch loss as a float (loss.item()).")
            loss = float(loss)
            seen += len(batch.labels)
            epoch_losses.append(loss)
            history.batch_loss.append(loss)
            history.examples_seen.append(seen)
            bar.set_postfix(loss=f"{loss:.3f}", avg=f"{sum(epoch_losses) / len(epoch_losses):.3f}")
            if settings.eval_every and len(history.batch_loss) % settings.eval_every == 0:
                _record_periodic_eval(model, train_loader, val_loader, settings, history)
    bar.close()
    if not epoch_losses:
        raise ValueError("The training loader yielded no batch: check the dataset.")
    history.epoch_seconds.append(time.perf_counter() - start)
    history.epoch_examples_seen.append(seen)
    for loader, losses, accuracies in ((train_loader, history.train_loss, history.train_acc),
                                       (val_loader, history.val_loss, history.val_acc)):
        loss, accuracy = evaluate(loader, model, settings.logits_fn, settings.device,
                                  precision=settings.precision)
        losses.append(loss)
        accuracies.append(accuracy)
    if settings.progress:
        tqdm.write(f"epoch {epoch}: train loss {history.train_loss[-1]:.3f} acc "
                   f"{history.train_acc[-1]:.1%} | val loss {history.val_loss[-1]:.3f} acc "
                   f"{history.val_acc[-1]:.1%} | {history.epoch_seconds[-1]:.1f} s")
