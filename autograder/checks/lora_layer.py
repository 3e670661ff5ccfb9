"""Hidden checks of notebook 01: `LoRALayer`.

They test behaviour, not a storage layout: the lab asks for A (in_dim, rank) and B (rank,
out_dim) and its visible shape test checks that; the paper's and PEFT's layout, A (rank,
in_dim) and B (out_dim, rank) with x @ A.T @ B.T, computes the same map and passes here.
"""

from __future__ import annotations

import math

import torch

from helpers.diagnose import scaling_mistake


def _make(LoRALayer, in_dim=20, out_dim=12, rank=4, alpha=8.0):
    torch.manual_seed(0)
    return LoRALayer(in_dim, out_dim, rank, alpha)


def delta_w(layer, in_dim: int, out_dim: int, rank: int) -> torch.Tensor:
    """The (in_dim, out_dim) update A B stored by `layer`, in the lab's or the paper's layout."""
    A, B = layer.A, layer.B
    if A.shape == (in_dim, rank) and B.shape == (rank, out_dim):
        return A @ B
    if A.shape == (rank, in_dim) and B.shape == (out_dim, rank):
        return (B @ A).T
    raise AssertionError(
        f"A {tuple(A.shape)} and B {tuple(B.shape)} do not make a rank-{rank} update from "
        f"{in_dim} to {out_dim} features (A (in_dim, rank), B (rank, out_dim))."
    )


def kaiming_bound(A: torch.Tensor, in_dim: int) -> float:
    """kaiming_uniform_(a=sqrt(5))'s bound on A: 1/sqrt(fan_in), fan_in = A.shape[1].

    In the lab's layout (in_dim, rank) fan_in is the rank; in the paper's (rank, in_dim) it is
    in_dim.
    """
    return 1 / math.sqrt(A.shape[1] if A.shape[0] == in_dim else in_dim)


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
    in_dim = 64
    layer = _make(LoRALayer, in_dim=in_dim, out_dim=32, rank=8)
    assert torch.count_nonzero(layer.B) == 0, "B must start at zero so that LoRA starts as a no-op."
    assert torch.count_nonzero(layer.A) == layer.A.numel(), "A must start random, not zero."
    bound = kaiming_bound(layer.A, in_dim)
    largest = layer.A.abs().max().item()
    assert largest <= bound + 1e-6, (
        "A's values are larger than kaiming-uniform with a=sqrt(5) gives; use "
        "torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))."
    )
    assert largest > 0.5 * bound, "A's values are too small for kaiming-uniform."


def scaling(LoRALayer) -> None:
    """`scaling` is alpha / rank."""
    for rank, alpha in [(4, 8.0), (8, 16.0), (16, 4.0)]:
        layer = _make(LoRALayer, rank=rank, alpha=alpha)
        assert hasattr(layer, "scaling"), "Store alpha / rank in self.scaling."
        value = float(layer.scaling)
        assert math.isclose(value, alpha / rank), scaling_mistake(value, rank, alpha) or (
            f"With rank={rank} and alpha={alpha}, scaling is {value}; it should be alpha / rank."
        )


def forward_matches_reference(LoRALayer) -> None:
    """With non-zero B, forward is x -> (alpha / rank) * x ΔW on 2-D and 3-D inputs."""
    in_dim, out_dim, rank, alpha = 20, 12, 4, 8.0
    layer = _make(LoRALayer, in_dim=in_dim, out_dim=out_dim, rank=rank, alpha=alpha)
    torch.manual_seed(1)
    with torch.no_grad():
        layer.B.normal_()
        update = delta_w(layer, in_dim, out_dim, rank)
        for shape in [(5, in_dim), (2, 7, in_dim)]:
            x = torch.randn(*shape)
            out = layer(x)
            assert out.shape == (*shape[:-1], out_dim), (
                f"Input of shape {shape} gave output {tuple(out.shape)}; expected "
                f"{(*shape[:-1], out_dim)}."
            )
            expected = x @ update
            ratio = (out.flatten() @ expected.flatten() / (expected.flatten() @ expected.flatten())).item()
            proportional = torch.allclose(out, ratio * expected, rtol=1e-4, atol=1e-4)
            mistake = scaling_mistake(ratio, rank, alpha) if proportional else None
            assert torch.allclose(out, (alpha / rank) * expected, rtol=1e-4, atol=1e-5), mistake or (
                f"With a non-zero B, the output for an input of shape {shape} is not "
                "scaling * (x @ A @ B)."
            )
