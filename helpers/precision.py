"""Precision policy: which dtype a model's forward passes compute in, and applying it.

- `resolve_precision(precision, device)`: what "auto", "fp32", "bf16" or "fp16" means on a
  device. "auto" is bf16 where the hardware computes it natively (CUDA GPUs with bf16, CPUs
  with AVX512-BF16 or AMX, see `helpers.devices`), float32 elsewhere. float16 (CUDA, MPS)
  only on request: the student's step has no loss scaling.
- `autocast_forward(model, precision, device)`: inside the block, the model's forward passes
  run under `torch.autocast` (through forward hooks, removed afterwards) and hand back
  float32 outputs, so the student's loss, backward pass and optimizer step run as written,
  and the trainable parameters, their gradients and AdamW's state stay float32.
- `frozen_weights_in(model, dtype)`: inside the block, the frozen `nn.Linear` weights are
  stored in the autocast dtype (exactly the values autocast would compute at every forward
  pass, computed once), restored bit for bit on leaving.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from helpers import devices
from helpers.env_info import pick_device

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_ALIASES = {"float32": "fp32", "32": "fp32", "none": "fp32", "false": "fp32",
            "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "true": "auto"}
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


@dataclass(frozen=True)
class Precision:
    """A resolved precision: `name` ('fp32', 'bf16', 'fp16'), its autocast dtype and why."""

    name: str
    dtype: torch.dtype | None  # None: plain float32, no autocast
    reason: str

    @property
    def autocast(self) -> bool:
        """True when forward passes run under torch.autocast (bf16 or fp16)."""
        return self.dtype is not None

    def describe(self) -> str:
        """'bf16 autocast (auto: the CPU has AVX512-BF16)' or 'fp32 (as asked)'."""
        what = f"{self.name} autocast" if self.autocast else "fp32"
        return f"{what} ({self.reason})"


def _auto(device: torch.device) -> Precision:
    if device.type == "cuda":
        if devices.cuda_bf16_native(device):
            return Precision("bf16", torch.bfloat16, "auto: the GPU computes bf16")
        return Precision("fp32", None, "auto: this GPU has no native bf16, and fp16 would "
                                       "need loss scaling in train_step")
    if device.type == "cpu":
        instructions = devices.cpu_bf16_instructions()
        if instructions:
            return Precision("bf16", torch.bfloat16, f"auto: the CPU has {instructions}")
        return Precision("fp32", None, "auto: the CPU has no bf16 instructions")
    return Precision("fp32", None, f"auto: fp32 on {device.type}")


def resolve_precision(precision: str | torch.dtype | Precision | None = "auto",
                      device: torch.device | str | None = None) -> Precision:
    """What `precision` means on `device` (None: picked): "auto", "fp32", "bf16" or "fp16".

    "auto": bf16 on a CUDA GPU with native bf16, bf16 on a CPU with bf16 instructions, fp32
    otherwise (MPS included). fp16 is never picked automatically: the student's `train_step`
    has no loss scaling (GradScaler), so small gradients could underflow; ask for it
    explicitly on CUDA or MPS if you want it. A `Precision` is returned as it is.
    """
    if isinstance(precision, Precision):
        return precision
    device = torch.device(device) if device is not None else pick_device()
    if isinstance(precision, torch.dtype):
        precision = DTYPE_NAMES.get(precision, str(precision))
    key = str(precision).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    if key == "auto":
        return _auto(device)
    if key == "fp32":
        return Precision("fp32", None, "as asked")
    if key == "fp16" and device.type == "cpu":
        raise ValueError("fp16 autocast is for GPUs; on a CPU use precision='bf16' (fast only "
                         "with bf16 instructions, see cpu_bf16_instructions()) or 'fp32'.")
    reason = "as asked"
    if key == "bf16" and device.type == "cpu" and not devices.cpu_bf16_instructions():
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


def frozen_linear_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The frozen float32 weights and biases of the model's `nn.Linear` layers, each once."""
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
    params = frozen_linear_parameters(model)
    originals = []
    try:
        for param in params:
            originals.append(param.data)
            param.data = param.data.to(dtype)
        yield sum(param.numel() for param in params)
    finally:
        for param, original in zip(params, originals):
            param.data = original
