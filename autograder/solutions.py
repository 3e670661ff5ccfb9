"""Reference solutions of the lab's exercises (instructor only, never released).

The hidden checks compare students' code against these, the benchmarks and tests use them,
and the master notebooks take their solution cells from here.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRALayer(nn.Module):
    """Low-rank update x -> (alpha / rank) * x @ A @ B, with B = 0 at the start."""

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        self.A = nn.Parameter(torch.empty(in_dim, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaling * (x @ self.A @ self.B)


class LinearWithLoRA(nn.Module):
    """A frozen-able nn.Linear plus a trainable LoRA branch: linear(x) + lora(x)."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.linear = linear
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.lora(x)


def replace_linear_with_lora(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    """Wrap every nn.Linear of `model` (recursively) in LinearWithLoRA, except `out_head`."""
    for name, child in model.named_children():
        if name == "out_head":
            continue
        if isinstance(child, nn.Linear):
            setattr(model, name, LinearWithLoRA(child, rank, alpha))
        else:
            replace_linear_with_lora(child, rank, alpha)
    return model


def freeze_and_activate_lora(model: nn.Module) -> nn.Module:
    """Freeze every parameter, then make only the LoRA matrices A and B trainable."""
    for param in model.parameters():
        param.requires_grad = False
    for module in model.modules():
        if isinstance(module, LoRALayer):
            module.A.requires_grad = True
            module.B.requires_grad = True
    return model
