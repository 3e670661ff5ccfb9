"""Training and evaluation loops for the spam classifier.

The lab's exercises are passed in, not written here:

- `step_fn(model, batch, optimizer) -> float`: one optimisation step on a batch, returning its
  loss (the student's `train_step`, notebook 05);
- `logits_fn(logits, last_idx) -> (batch, num_classes)`: the logits at each message's last
  real token (the student's `last_token_logits`, notebook 04).

Batches are `(input_ids, labels, last_idx)` (see `helpers.spam_data.SpamBatch`) and are moved
to the device before they reach those functions. Grading mode ($LORA_LAB_GRADING=1, see
`helpers.modes`) caps every loop to a few batches so that a training cell takes seconds.

Speed without changing the lab's code (`train_classifier` picks these per device and prints
what it picked; every choice can be overridden):

- precision="auto": the model's forward passes run under `torch.autocast` in bfloat16 where
  the hardware computes it natively (CUDA GPUs with bf16, CPUs with AVX512-BF16 or AMX
  instructions), in float32 elsewhere. Only the forward pass is autocast (through forward
  hooks on the model, removed afterwards); the logits come back as float32, so the student's
  loss, backward pass and optimizer step run as written, and the LoRA parameters, their
  gradients and AdamW's state stay float32. float16 (CUDA, MPS) only on request: the
  student's step has no loss scaling.
- frozen_weights="auto": while autocasting, the frozen `nn.Linear` weights are kept in the
  autocast dtype for the duration of `train_classifier` (exactly the values autocast would
  compute at every forward pass, computed once) and restored bit for bit afterwards.
- batching is the loader's business: `helpers.spam_data.spam_loaders(bucket=True)` groups
  messages of similar lengths so that batches carry almost no padding (1.6x faster per
  epoch). It is not the default: spam is longer than ham, so length-sorted batches are often
  all-ham or all-spam, which changes the training trajectory (see benchmarks/README.md).
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from helpers import modes
from helpers.env_info import pick_device, set_seed
from helpers.spam_data import SpamBatch, describe_batching

StepFn = Callable[[nn.Module, SpamBatch, torch.optim.Optimizer], float]
LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_PRECISION_ALIASES = {"float32": "fp32", "32": "fp32", "none": "fp32", "false": "fp32",
                      "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "true": "auto"}
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


@functools.lru_cache(maxsize=1)
def cpu_bf16_instructions() -> str | None:
    """The CPU's native bfloat16 instruction set ('AMX-BF16' or 'AVX512-BF16'), else None.

    Without one, bfloat16 on the CPU is emulated and slower than float32. Asks torch's cpuinfo
    (`torch.cpu.get_capabilities()`), then /proc/cpuinfo's flags.
    """
    flags: set[str] = set()
    try:
        flags = {name for name, value in torch.cpu.get_capabilities().items() if value is True}
    except Exception:  # older torch, unusual platform: fall back on the kernel's flags
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as info:
                for line in info:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    if "amx_bf16" in flags:
        return "AMX-BF16"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return None


def cuda_bf16_native(device: torch.device | str | None = None) -> bool:
    """True when the CUDA GPU computes bf16 in hardware (Ampere and later, or ROCm's check).

    `torch.cuda.is_bf16_supported()` also says yes for older GPUs (T4, V100) that emulate it,
    slower than float32.
    """
    if getattr(torch.version, "hip", None):
        return torch.cuda.is_bf16_supported()
    return torch.cuda.get_device_capability(device)[0] >= 8


@dataclass(frozen=True)
class Precision:
    """A resolved precision: `name` ('fp32', 'bf16', 'fp16'), its autocast dtype and why."""

    name: str
    dtype: torch.dtype | None  # None: plain float32, no autocast
    reason: str

    @property
    def autocast(self) -> bool:
        return self.dtype is not None

    def describe(self) -> str:
        what = f"{self.name} autocast" if self.autocast else "fp32"
        return f"{what} ({self.reason})"


def resolve_precision(precision: str | torch.dtype | None = "auto",
                      device: torch.device | str | None = None) -> Precision:
    """What `precision` means on `device`: "auto", "fp32", "bf16" or "fp16" (or a dtype).

    "auto": bf16 on a CUDA GPU with native bf16 (see `cuda_bf16_native`), bf16 on a CPU with
    bf16 instructions (see `cpu_bf16_instructions`), fp32 otherwise (MPS included). fp16 is
    never picked automatically: the student's `train_step` has no loss scaling (GradScaler),
    so small gradients could underflow; ask for it explicitly on CUDA or MPS if you want it.
    """
    device = torch.device(device) if device is not None else pick_device()
    if isinstance(precision, torch.dtype):
        precision = _NAMES.get(precision, str(precision))
    key = str(precision).strip().lower()
    key = _PRECISION_ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    if key == "auto":
        if device.type == "cuda":
            if cuda_bf16_native(device):
                return Precision("bf16", torch.bfloat16, "auto: the GPU computes bf16")
            return Precision("fp32", None, "auto: this GPU has no native bf16, and fp16 would "
                                           "need loss scaling in train_step")
        if device.type == "cpu":
            instructions = cpu_bf16_instructions()
            if instructions:
                return Precision("bf16", torch.bfloat16, f"auto: the CPU has {instructions}")
            return Precision("fp32", None, "auto: the CPU has no bf16 instructions")
        return Precision("fp32", None, f"auto: fp32 on {device.type}")
    if key == "fp32":
        return Precision("fp32", None, "as asked")
    if key == "fp16" and device.type == "cpu":
        raise ValueError("fp16 autocast is for GPUs; on a CPU use precision='bf16' (fast only "
                         "with bf16 instructions, see cpu_bf16_instructions()) or 'fp32'.")
    reason = "as asked"
    if key == "bf16" and device.type == "cpu" and not cpu_bf16_instructions():
        reason = "as asked; this CPU has no bf16 instructions, so it is emulated and slow"
    if key == "fp16":
        reason = "as asked; no loss scaling, small gradients may underflow"
    return Precision(key, _DTYPES[key], reason)


@contextmanager
def autocast_forward(model: nn.Module, precision: Precision,
                     device: torch.device | str) -> Iterator[None]:
    """Run `model`'s forward passes under autocast while inside the block; nothing else.

    Forward hooks enter `torch.autocast` before the model's forward and leave it after
    (even when the forward raises), and floating-point outputs come back as float32: the
    loss, the backward pass and the optimizer step that the caller writes run in float32,
    as PyTorch recommends (backward ops reuse the dtypes autocast chose in the forward).
    The hooks are removed on leaving the block. No-op for fp32.
    """
    if not precision.autocast:
        yield
        return
    device_type = torch.device(device).type
    entered: list = []

    def enter(module, args):
        ctx = torch.autocast(device_type, dtype=precision.dtype)
        ctx.__enter__()
        entered.append(ctx)

    def leave(module, args, output):
        if entered:
            entered.pop().__exit__(None, None, None)
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            return output.float()
        return None

    handles = [model.register_forward_pre_hook(enter),
               model.register_forward_hook(leave, always_call=True)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        while entered:
            entered.pop().__exit__(None, None, None)


def _frozen_linear_parameters(model: nn.Module) -> list[nn.Parameter]:
    params, seen = [], set()
    for module in model.modules():
        if isinstance(module, nn.Linear):
            for param in (module.weight, module.bias):
                if (param is not None and not param.requires_grad and id(param) not in seen
                        and param.dtype == torch.float32):
                    seen.add(id(param))
                    params.append(param)
    return params


@contextmanager
def frozen_weights_in(model: nn.Module, dtype: torch.dtype | None) -> Iterator[int]:
    """Store the frozen float32 `nn.Linear` weights and biases in `dtype` inside the block.

    Under autocast, every forward pass casts each frozen weight to the autocast dtype again
    (autocast caches casts of trainable leaves only). Storing them in that dtype for the
    block gives the same values once, and saves that work at every step. The float32
    originals are kept aside and put back on leaving, bit for bit. Trainable parameters (LoRA,
    head) and non-Linear weights (embeddings, layer norms) are never touched. Yields the
    number of parameters converted (0 when `dtype` is None).
    """
    if dtype is None:
        yield 0
        return
    params = _frozen_linear_parameters(model)
    originals = []
    try:
        for param in params:
            originals.append(param.data)
            param.data = param.data.to(dtype)
        yield sum(param.numel() for param in params)
    finally:
        for param, original in zip(params, originals):
            param.data = original


def _threads(device: torch.device) -> str:
    if device.type == "cpu":
        return f"{torch.get_num_threads()} threads, {platform.machine() or 'cpu'}"
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


@dataclass
class TrainingSettings:
    """What `train_classifier` runs with (printed at the start, kept in `History.settings`)."""

    device: str
    device_detail: str
    precision: str          # 'fp32', 'bf16' or 'fp16' (autocast)
    precision_reason: str
    frozen_weights: str     # 'fp32' or the dtype they are kept in during training
    train_batching: str
    eval_batching: str
    torch_version: str = torch.__version__

    def line(self) -> str:
        autocast = f"{self.precision} autocast" if self.precision != "fp32" else "fp32"
        frozen = ("" if self.frozen_weights == "fp32"
                  else f", frozen Linear weights kept in {self.frozen_weights}")
        return (f"device {self.device} ({self.device_detail}) | precision {autocast} "
                f"({self.precision_reason}){frozen} | train: {self.train_batching} | "
                f"eval: {self.eval_batching}")


def training_settings(train_loader: Iterable, val_loader: Iterable | None = None,
                      device: torch.device | str | None = None, precision: str = "auto",
                      frozen_weights: str | bool = "auto") -> tuple[TrainingSettings, Precision]:
    """The settings `train_classifier` would use, resolved for `device` (None: picked)."""
    device = pick_device(str(device) if device is not None else None)
    resolved = resolve_precision(precision, device)
    frozen_key = str(frozen_weights).strip().lower()
    if frozen_key not in ("auto", "true", "false", "fp32", "cast"):
        raise ValueError(f"frozen_weights={frozen_weights!r}: use 'auto' (cast while "
                         "autocasting), True/'cast' or False/'fp32'.")
    cast = resolved.autocast and frozen_key in ("auto", "true", "cast")
    batching = describe_batching(train_loader)
    train = batching["text"]
    if batching["order"] == "shuffled" and batching["padding"] == "per batch":
        train += " (spam_loaders(bucket=True) pads less)"
    evaluation = describe_batching(val_loader)["text"] if val_loader is not None else "none"
    settings = TrainingSettings(
        device=str(device), device_detail=_threads(device), precision=resolved.name,
        precision_reason=resolved.reason,
        frozen_weights=_NAMES[resolved.dtype] if cast else "fp32",
        train_batching=train, eval_batching=evaluation,
    )
    return settings, resolved


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
             max_batches: int | None = None,
             precision: str | Precision = "fp32") -> tuple[float, float]:
    """(mean loss, accuracy) over the first `max_batches` batches (None: all), per example.

    Runs in eval mode without gradients and puts the model back in the mode it was in.
    Returns (nan, nan) for an empty loader. precision: "fp32" (default, exact), "auto",
    "bf16" or "fp16" to run the forward passes under autocast (see `resolve_precision`);
    the loss is always computed in float32.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    if not isinstance(precision, Precision):
        precision = resolve_precision(precision, device)
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    try:
        with torch.no_grad(), autocast_forward(model, precision, device):
            for batch in islice(loader, batch_cap(max_batches)):
                batch = _to_device(batch, device)
                logits = _class_logits(model, batch, logits_fn).float()
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


def train_classifier(model: nn.Module, train_loader: Iterable, val_loader: Iterable,
                     optimizer: torch.optim.Optimizer, num_epochs: int, *,
                     step_fn: StepFn, logits_fn: LogitsFn,
                     device: torch.device | str | None = None,
                     eval_every: int | None = None, eval_batches: int = 5,
                     max_batches: int | None = None, seed: int | None = None,
                     progress: bool = True, precision: str = "auto",
                     frozen_weights: str | bool = "auto") -> History:
    """Train `model` for `num_epochs` with the student's `step_fn`; returns a `History`.

    device: None picks cuda, mps or cpu (see helpers.env_info.pick_device); the model is
    moved there. max_batches: training batches per epoch (None: all). eval_every: also record
    train and validation loss every that many steps, each on `eval_batches` batches (like the
    original lab's eval_iter). The end-of-epoch evaluation covers both loaders entirely.
    Grading mode caps every one of these loops. seed: passed to helpers.env_info.set_seed first.

    precision: "auto" (bf16 autocast where the device computes bf16 natively, else fp32),
    "fp32", "bf16" or "fp16"; it applies to the training steps and to the evaluations, see
    `resolve_precision`. frozen_weights: "auto" keeps the frozen Linear weights in the
    autocast dtype during training (same numbers, less work), False keeps them float32.
    The settings are printed first (with `progress`) and kept in `history.settings`.
    """
    if seed is not None:
        set_seed(seed)
    settings, resolved = training_settings(train_loader, val_loader, device, precision,
                                           frozen_weights)
    device = torch.device(settings.device)
    model.to(device)
    train_batches = batch_cap(max_batches)
    total = len(train_loader) if train_batches is None else min(len(train_loader), train_batches)
    history = History(settings=asdict(settings))
    if progress:
        tqdm.write(f"settings: {settings.line()}")
    frozen_dtype = resolved.dtype if settings.frozen_weights != "fp32" else None
    with frozen_weights_in(model, frozen_dtype):
        _train_epochs(model, train_loader, val_loader, optimizer, num_epochs, step_fn,
                      logits_fn, device, eval_every, eval_batches, train_batches, total,
                      progress, resolved, history)
    return history


def _train_epochs(model, train_loader, val_loader, optimizer, num_epochs, step_fn, logits_fn,
                  device, eval_every, eval_batches, train_batches, total, progress,
                  precision, history) -> None:
    seen, step = 0, 0
    for epoch in range(1, num_epochs + 1):
        model.train()
        start = time.perf_counter()
        bar = tqdm(islice(train_loader, train_batches), total=total, unit="batch",
                   desc=f"epoch {epoch}/{num_epochs}", disable=not progress)
        epoch_losses = []
        for batch in bar:
            batch = _to_device(batch, device)
            with autocast_forward(model, precision, device):
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
                history.eval_train_loss.append(calc_loss_loader(
                    train_loader, model, logits_fn, device, eval_batches, precision))
                history.eval_val_loss.append(calc_loss_loader(
                    val_loader, model, logits_fn, device, eval_batches, precision))
        bar.close()
        if not epoch_losses:
            raise ValueError("The training loader yielded no batch: check the dataset.")
        history.epoch_seconds.append(time.perf_counter() - start)
        history.epoch_examples_seen.append(seen)
        train_loss, train_acc = evaluate(train_loader, model, logits_fn, device,
                                         precision=precision)
        val_loss, val_acc = evaluate(val_loader, model, logits_fn, device, precision=precision)
        history.train_loss.append(train_loss)
        history.train_acc.append(train_acc)
        history.val_loss.append(val_loss)
        history.val_acc.append(val_acc)
        if progress:
            tqdm.write(f"epoch {epoch}: train loss {train_loss:.3f} acc {train_acc:.1%} | "
                       f"val loss {val_loss:.3f} acc {val_acc:.1%} | "
                       f"{history.epoch_seconds[-1]:.1f} s")
