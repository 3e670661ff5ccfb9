"""Counting parameters, the way PEFT's `print_trainable_parameters` reports them."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) number of parameters of `model`."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def trainable_parameters_line(model: nn.Module) -> str:
    """'trainable params: 1,327,104 || all params: 164,364,288 || trainable%: 0.8074'."""
    trainable, total = count_parameters(model)
    percent = 100 * trainable / total if total else 0.0
    return f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {percent:.4f}"


def print_trainable_parameters(model: nn.Module) -> None:
    """Print the trainable/total summary line of `model`."""
    print(trainable_parameters_line(model))
