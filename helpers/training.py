"""Training and evaluation loops for the spam classifier.

The lab's exercises are passed in, not written here:

- `step_fn(model, batch, optimizer) -> float`: one optimisation step on a batch, returning its
  loss (the student's `train_step`, notebook 05);
- `logits_fn(logits, last_idx) -> (batch, num_classes)`: the logits at each message's last
  real token (the student's `last_token_logits`, notebook 04).

Batches are `(input_ids, labels, last_idx)` (see `helpers.spam_data.SpamBatch`) and are moved
to the device before they reach those functions. Grading mode ($LORA_LAB_GRADING=1, see
`helpers.modes`) caps every loop to a few batches so that a training cell takes seconds.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from helpers import modes
from helpers.env_info import pick_device, set_seed
from helpers.spam_data import SpamBatch

StepFn = Callable[[nn.Module, SpamBatch, torch.optim.Optimizer], float]
LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def batch_cap(requested: int | None) -> int | None:
    """`requested` batches (None: all), capped to a few in grading mode."""
    cap = modes.max_batches()
    if cap is None:
        return requested
    return cap if requested is None else min(requested, cap)


def _to_device(batch, device: torch.device) -> SpamBatch:
    if len(batch) != 3:
        raise ValueError(f"A batch has {len(batch)} parts; loaders must yield "
                         "(input_ids, labels, last_idx), like helpers.spam_data's loaders.")
    return SpamBatch(*batch).to(device)


def _class_logits(model: nn.Module, batch: SpamBatch, logits_fn: LogitsFn) -> torch.Tensor:
    logits = logits_fn(model(batch.input_ids), batch.last_idx)
    if logits.ndim != 2 or logits.shape[0] != len(batch.labels):
        raise ValueError(
            f"logits_fn returned shape {tuple(logits.shape)}, expected (batch, num_classes) = "
            f"({len(batch.labels)}, C): keep one row of logits per message, taken at its last "
            "real token."
        )
    return logits


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def evaluate(loader: Iterable, model: nn.Module, logits_fn: LogitsFn,
             device: torch.device | str | None = None,
             max_batches: int | None = None) -> tuple[float, float]:
    """(mean loss, accuracy) over the first `max_batches` batches (None: all), per example.

    Runs in eval mode without gradients and puts the model back in the mode it was in.
    Returns (nan, nan) for an empty loader.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    try:
        with torch.no_grad():
            for batch in islice(loader, batch_cap(max_batches)):
                batch = _to_device(batch, device)
                logits = _class_logits(model, batch, logits_fn)
                loss_sum += F.cross_entropy(logits, batch.labels, reduction="sum").item()
                correct += (logits.argmax(dim=-1) == batch.labels).sum().item()
                seen += len(batch.labels)
    finally:
        model.train(was_training)
    if seen == 0:
        return math.nan, math.nan
    return loss_sum / seen, correct / seen


def calc_loss_loader(loader: Iterable, model: nn.Module, logits_fn: LogitsFn,
                     device: torch.device | str | None = None,
                     max_batches: int | None = None) -> float:
    """Mean cross-entropy loss per example over the loader (eval mode, no gradients)."""
    return evaluate(loader, model, logits_fn, device, max_batches)[0]


def calc_accuracy_loader(loader: Iterable, model: nn.Module, logits_fn: LogitsFn,
                         device: torch.device | str | None = None,
                         max_batches: int | None = None) -> float:
    """Fraction of messages classified correctly (eval mode, no gradients)."""
    return evaluate(loader, model, logits_fn, device, max_batches)[1]


@dataclass
class History:
    """What happened during training; `to_dict()` is JSON-ready.

    Per batch (training mode, so dropout on): `batch_loss` and the running `examples_seen`.
    Per epoch (evaluated in eval mode after the epoch): train/val loss and accuracy, the
    examples seen so far and the seconds of the epoch's training loop (periodic evaluations
    included, the end-of-epoch one not). Every `eval_every` steps, if asked: train/val loss at
    `eval_examples_seen`.
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


def train_classifier(model: nn.Module, train_loader: Iterable, val_loader: Iterable,
                     optimizer: torch.optim.Optimizer, num_epochs: int, *,
                     step_fn: StepFn, logits_fn: LogitsFn,
                     device: torch.device | str | None = None,
                     eval_every: int | None = None, eval_batches: int = 5,
                     max_batches: int | None = None, seed: int | None = None,
                     progress: bool = True) -> History:
    """Train `model` for `num_epochs` with the student's `step_fn`; returns a `History`.

    device: None picks cuda, mps or cpu (see helpers.env_info.pick_device); the model is
    moved there. max_batches: training batches per epoch (None: all). eval_every: also record
    train and validation loss every that many steps, each on `eval_batches` batches (like the
    original lab's eval_iter). The end-of-epoch evaluation covers both loaders entirely.
    Grading mode caps every one of these loops. seed: passed to helpers.env_info.set_seed first.
    """
    if seed is not None:
        set_seed(seed)
    device = pick_device(str(device) if device is not None else None)
    model.to(device)
    train_batches = batch_cap(max_batches)
    total = len(train_loader) if train_batches is None else min(len(train_loader), train_batches)
    history = History()
    seen, step = 0, 0
    for epoch in range(1, num_epochs + 1):
        model.train()
        start = time.perf_counter()
        bar = tqdm(islice(train_loader, train_batches), total=total, unit="batch",
                   desc=f"epoch {epoch}/{num_epochs}", disable=not progress)
        epoch_losses = []
        for batch in bar:
            batch = _to_device(batch, device)
            loss = step_fn(model, batch, optimizer)
            if not isinstance(loss, (float, int, torch.Tensor)):
                raise TypeError(f"step_fn returned {type(loss).__name__}; it must return the "
                                "batch loss as a float (loss.item()).")
            loss = float(loss)
            seen += len(batch.labels)
            step += 1
            epoch_losses.append(loss)
            history.batch_loss.append(loss)
            history.examples_seen.append(seen)
            bar.set_postfix(loss=f"{loss:.3f}", avg=f"{sum(epoch_losses) / len(epoch_losses):.3f}")
            if eval_every and step % eval_every == 0:
                history.eval_examples_seen.append(seen)
                history.eval_train_loss.append(
                    calc_loss_loader(train_loader, model, logits_fn, device, eval_batches))
                history.eval_val_loss.append(
                    calc_loss_loader(val_loader, model, logits_fn, device, eval_batches))
        bar.close()
        if not epoch_losses:
            raise ValueError("The training loader yielded no batch: check the dataset.")
        history.epoch_seconds.append(time.perf_counter() - start)
        history.epoch_examples_seen.append(seen)
        train_loss, train_acc = evaluate(train_loader, model, logits_fn, device)
        val_loss, val_acc = evaluate(val_loader, model, logits_fn, device)
        history.train_loss.append(train_loss)
        history.train_acc.append(train_acc)
        history.val_loss.append(val_loss)
        history.val_acc.append(val_acc)
        if progress:
            tqdm.write(f"epoch {epoch}: train loss {train_loss:.3f} acc {train_acc:.1%} | "
                       f"val loss {val_loss:.3f} acc {val_acc:.1%} | "
                       f"{history.epoch_seconds[-1]:.1f} s")
    return history
