"""Hidden checks of notebook 01: `LoRALayer`."""

from __future__ import annotations

import math

import torch

from autograder import solutions


def _make(LoRALayer, in_dim=20, out_dim=12, rank=4, alpha=8.0):
    torch.manual_seed(0)
    return LoRALayer(in_dim, out_dim, rank, alpha)


def parameter_count(LoRALayer) -> None:
    """rank * (in_dim + out_dim) trainable parameters, for several sizes."""
    for in_dim, out_dim, rank in [(20, 12, 4), (768, 768, 8), (768, 3072, 16), (5, 7, 1)]:
        layer = LoRALayer(in_dim, out_dim, rank, 1.0)
        count = sum(p.numel() for p in layer.parameters() if p.requires_grad)
        expected = rank * (in_dim + out_dim)
        assert count == expected, (
            f"LoRALayer({in_dim}, {out_dim}, rank={rank}) has {count} trainable parameters; "
            f"a rank-{rank} update has {expected}. Check that A and B are nn.Parameter and "
            "nothing else is."
        )


def initialisation(LoRALayer) -> None:
    """B is all zeros; A is random within kaiming-uniform(a=sqrt(5)) bounds."""
    layer = _make(LoRALayer, in_dim=64, out_dim=32, rank=8)
    assert torch.count_nonzero(layer.B) == 0, "B must start at zero so that LoRA starts as a no-op."
    assert torch.count_nonzero(layer.A) == layer.A.numel(), "A must start random, not zero."
    # kaiming_uniform_(a=sqrt(5)) on a (in_dim, rank) tensor: fan_in = rank, bound = 1/sqrt(rank)
    bound = 1 / math.sqrt(layer.A.shape[1])
    assert layer.A.abs().max() <= bound + 1e-6, (
        "A's values are larger than kaiming-uniform with a=sqrt(5) gives; use "
        "torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))."
    )
    assert layer.A.abs().max() > 0.5 * bound, "A's values are too small for kaiming-uniform."


def scaling(LoRALayer) -> None:
    """`scaling` is alpha / rank."""
    for rank, alpha in [(4, 8.0), (8, 16.0), (16, 4.0)]:
        layer = _make(LoRALayer, rank=rank, alpha=alpha)
        assert hasattr(layer, "scaling"), "Store alpha / rank in self.scaling."
        assert math.isclose(float(layer.scaling), alpha / rank), (
            f"With rank={rank} and alpha={alpha}, scaling is {layer.scaling}; it should be alpha / rank."
        )


def forward_matches_reference(LoRALayer) -> None:
    """With non-zero B, forward equals scaling * x @ A @ B on 2-D and 3-D inputs."""
    layer = _make(LoRALayer, in_dim=20, out_dim=12, rank=4, alpha=8.0)
    reference = solutions.LoRALayer(20, 12, 4, 8.0)
    torch.manual_seed(1)
    with torch.no_grad():
        layer.B.normal_()
        reference.A.copy_(layer.A)
        reference.B.copy_(layer.B)
        for shape in [(5, 20), (2, 7, 20)]:
            x = torch.randn(*shape)
            out = layer(x)
            assert out.shape == (*shape[:-1], 12), (
                f"Input of shape {shape} gave output {tuple(out.shape)}; expected {(*shape[:-1], 12)}."
            )
            assert torch.allclose(out, reference(x), atol=1e-5), (
                f"With a non-zero B, the output for an input of shape {shape} is not "
                "scaling * (x @ A @ B)."
            )
