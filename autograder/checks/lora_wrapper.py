"""Hidden checks of notebook 02: `LinearWithLoRA`."""

from __future__ import annotations

import torch
from torch import nn

from autograder.checks.lora_layer import delta_w


def _wrapped(LinearWithLoRA, bias: bool = True, rank: int = 4, alpha: float = 8.0):
    torch.manual_seed(0)
    linear = nn.Linear(20, 12, bias=bias)
    return linear, LinearWithLoRA(linear, rank, alpha)


def keeps_the_given_layer(LinearWithLoRA) -> None:
    """The wrapper holds the very nn.Linear it was given (shared weights, no copy)."""
    linear, wrapped = _wrapped(LinearWithLoRA)
    inner = getattr(wrapped, "linear", None)
    assert inner is linear, (
        "Keep the layer you are given as self.linear (the same object, not a copy or a new "
        "nn.Linear): its pretrained weights must be shared."
    )
    with torch.no_grad():
        linear.weight.add_(1.0)
    x = torch.randn(3, 20)
    assert torch.allclose(wrapped(x), linear(x), atol=1e-6), (
        "After changing the original layer's weights, the wrapper's output did not follow: "
        "it must use the original layer, not a copy."
    )


def lora_branch_sizes(LinearWithLoRA) -> None:
    """A LoRA branch of the right shapes is stored as `self.lora`."""
    _, wrapped = _wrapped(LinearWithLoRA, rank=4)
    lora = getattr(wrapped, "lora", None)
    assert lora is not None, "Store the LoRA branch as self.lora."
    layouts = {((20, 4), (4, 12)), ((4, 20), (12, 4))}  # the lab's, the paper's
    assert (tuple(lora.A.shape), tuple(lora.B.shape)) in layouts, (
        "The LoRA branch must go from the layer's in_features to its out_features "
        f"(got A {tuple(lora.A.shape)}, B {tuple(lora.B.shape)} for nn.Linear(20, 12), rank 4)."
    )


def bias_free_layers(LinearWithLoRA) -> None:
    """Works on nn.Linear(bias=False) and equals it at initialisation."""
    linear, wrapped = _wrapped(LinearWithLoRA, bias=False)
    x = torch.randn(2, 5, 20)
    assert torch.allclose(wrapped(x), linear(x), atol=1e-6), (
        "For a layer without bias the wrapper must equal the layer at initialisation."
    )


def adds_the_lora_update(LinearWithLoRA) -> None:
    """With a non-zero B, output = linear(x) + (alpha / rank) * x ΔW."""
    linear, wrapped = _wrapped(LinearWithLoRA, rank=4, alpha=8.0)
    with torch.no_grad():
        wrapped.lora.B.normal_()
        x = torch.randn(2, 3, 20)
        expected = linear(x) + 2.0 * (x @ delta_w(wrapped.lora, 20, 12, 4))
        out = wrapped(x)
    assert not torch.allclose(out, linear(x), atol=1e-3), (
        "With a non-zero B the output still equals linear(x): add the LoRA branch's output."
    )
    assert torch.allclose(out, expected, atol=1e-5), (
        "With a non-zero B the output must be linear(x) + lora(x)."
    )
