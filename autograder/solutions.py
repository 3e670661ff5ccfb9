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


def last_token_logits(logits: torch.Tensor, last_idx: torch.Tensor) -> torch.Tensor:
    """Logits (batch, seq, C) -> (batch, C) at each sequence's last real (non-pad) token."""
    return logits[torch.arange(logits.shape[0], device=logits.device), last_idx]


def add_classification_head(model: nn.Module, num_classes: int = 2) -> nn.Module:
    """Replace `out_head` by a trainable num_classes head whose logits start near zero.

    With a small weight scale every class gets the same probability at first, so the initial
    loss is close to log(num_classes) whatever the features look like.
    """
    head = nn.Linear(model.out_head.in_features, num_classes)
    nn.init.normal_(head.weight, std=0.02 / math.sqrt(head.in_features))
    nn.init.zeros_(head.bias)
    model.out_head = head.to(model.out_head.weight.device)
    return model


def calc_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows of `logits` whose argmax equals the label."""
    return (logits.argmax(dim=-1) == labels).float().mean().item()


def train_step(model: nn.Module, batch, optimizer: torch.optim.Optimizer) -> float:
    """One optimisation step on a batch (input_ids, labels, last_idx); returns the loss."""
    input_ids, labels, last_idx = batch
    optimizer.zero_grad(set_to_none=True)
    logits = last_token_logits(model(input_ids), last_idx)
    loss = nn.functional.cross_entropy(logits, labels)
    loss.backward()
    optimizer.step()
    return loss.item()


def make_optimizer(model: nn.Module, lr: float = 5e-4, weight_decay: float = 0.1):
    """AdamW over the trainable parameters only."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                             lr=lr, weight_decay=weight_decay)
