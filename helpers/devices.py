"""What a device is and can do: its one-line description, native bf16, where a model lives.

`helpers.env_info.pick_device` chooses the device; this module answers questions about one:
`describe_device` (the line printed in settings and in the report's environment table),
`cpu_bf16_instructions` / `cuda_bf16_native` (is bf16 computed in hardware, or emulated and
slower than float32?), `model_device` and `batch_to_device`.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def describe_device(device: torch.device | str) -> str:
    """'cuda (NVIDIA H100 ...)', 'mps (Apple GPU)' or 'cpu (N threads, x86_64)'."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"{device.type} ({torch.get_num_threads()} threads, {platform.machine() or 'cpu'})"


def _cpu_flags() -> set[str]:
    try:
        return {name for name, value in torch.cpu.get_capabilities().items() if value is True}
    except Exception:  # older torch, unusual platform: fall back on the kernel's flags
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as info:
                for line in info:
                    if line.startswith("flags"):
                        return set(line.split(":", 1)[1].split())
        except OSError:
            pass
    return set()


@functools.lru_cache(maxsize=1)
def cpu_bf16_instructions() -> str | None:
    """The CPU's native bfloat16 instruction set ('AMX-BF16' or 'AVX512-BF16'), else None.

    Without one, bfloat16 on the CPU is emulated and slower than float32. Asks torch's cpuinfo
    (`torch.cpu.get_capabilities()`), then /proc/cpuinfo's flags.
    """
    flags = _cpu_flags()
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


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def batch_to_device(batch: Sequence[Any], device: torch.device | str) -> Sequence[Any]:
    """The batch with every tensor moved to `device` (a named tuple stays one, of its type)."""
    moved = [part.to(device) if isinstance(part, torch.Tensor) else part for part in batch]
    return type(batch)(*moved) if hasattr(batch, "_fields") else tuple(moved)
