"""Fused LoRA training: the frozen projection and the LoRA down-projection in one product.

A LoRA layer of the lab computes `linear(x) + scaling * (x @ A @ B)`, with A (in, r) and
B (r, out). Stack A's transpose under the frozen weight W (out, in): `S = [W; A^T]`, of shape
(out + r, in). Then one matrix product `x @ S^T = [x @ W^T, x @ A]` gives the frozen output
and the rank-r activations together, and in the backward pass one product
`[g, scaling * g @ B^T] @ S` gives the input gradient through both branches. A training step
then runs two large products per layer instead of two large and six small ones, with no
per-step cast of W (S is kept in the compute dtype) and no separate LoRA additions.

`fused_lora(model, dtype)` does this for the duration of a block, on every module that looks
like the lab's `LinearWithLoRA` (see `helpers.lora_merge.is_lora_wrapper`) with a frozen
linear and trainable A and B:

- each wrapper is first checked on a random input against its own forward (the student's
  code): a wrapper that computes something else (dropout, another formula) is left alone;
- it is then replaced in its parent by a `FusedLoRALinear` that holds the very same `A`, `B`
  and frozen `linear` (the optimizer keeps updating the student's parameters; A is copied
  into S whenever it has changed, B is used as it is); the frozen weight lives inside S
  meanwhile (in the compute dtype: no second copy, no per-step cast);
- on leaving, every wrapper is put back and the frozen weights restored bit for bit.

It is the same function with the same gradients, up to float rounding (tested in
tests/test_performance.py, measured by benchmarks/parity.py); `train_classifier(fuse_lora=False)`,
the default, runs the student's layers as written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from helpers.lora_merge import children_first, is_lora_wrapper, relative_error

FUSE_RTOL = 1e-4  # float32 check of a wrapper against its fused replacement


class _FusedLoRAProduct(torch.autograd.Function):
    """y = x S[:out]^T + bias + scaling (x S[out:]^T) B, with S[out:] = A^T (see module doc)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, stacked: torch.Tensor,
                bias: torch.Tensor | None, scaling: float) -> torch.Tensor:
        out = stacked.shape[0] - A.shape[1]
        rows = x.reshape(-1, x.shape[-1]).to(stacked.dtype)
        both = rows @ stacked.T                      # (tokens, out + r): x W^T and x A
        down = both[:, out:]
        b = B.detach().to(stacked.dtype)
        frozen = both[:, :out] if bias is None else both[:, :out] + bias.to(stacked.dtype)
        y = torch.addmm(frozen, down, b, alpha=scaling)
        ctx.save_for_backward(rows, down, b, stacked)
        ctx.scaling, ctx.input_shape, ctx.input_dtype = scaling, x.shape, x.dtype
        ctx.param_dtypes = (A.dtype, B.dtype)
        return y.view(*x.shape[:-1], -1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        rows, down, b, stacked = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1]).to(stacked.dtype)
        grad_down = ctx.scaling * (g @ b.T)                          # (tokens, r)
        grad_x = None
        if ctx.needs_input_grad[0]:  # both branches at once
            grad_x = (torch.cat([g, grad_down], dim=1) @ stacked).view(ctx.input_shape)
            grad_x = grad_x.to(ctx.input_dtype)
        grad_A = (rows.T @ grad_down).to(ctx.param_dtypes[0])
        grad_B = (ctx.scaling * (down.T @ g)).to(ctx.param_dtypes[1])
        return grad_x, grad_A, grad_B, None, None, None


class FusedLoRALinear(nn.Module):
    """Computes what a LoRA wrapper computes, with its own A, B and frozen linear (see above)."""

    def __init__(self, wrapper: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.wrapper = wrapper
        linear, lora = wrapper.linear, wrapper.lora
        self.out_features = linear.out_features
        self.stacked = torch.empty(linear.out_features + lora.A.shape[1], linear.in_features,
                                   dtype=dtype, device=linear.weight.device)
        with torch.no_grad():
            self.stacked[:linear.out_features].copy_(linear.weight)
        self._a_version: int | None = None  # A's version when last copied into `stacked`
        scaling = lora.scaling
        self.scaling = (float(scaling.detach()) if isinstance(scaling, torch.Tensor)
                        else float(scaling))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lora, bias = self.wrapper.lora, self.wrapper.linear.bias
        if lora.A._version != self._a_version:  # the optimizer moved A (or first call)
            with torch.no_grad():
                self.stacked[self.out_features:].copy_(lora.A.T)
            self._a_version = lora.A._version
        return _FusedLoRAProduct.apply(x, lora.A, lora.B, self.stacked, bias, self.scaling)


def _fusable(module: nn.Module) -> bool:
    if not is_lora_wrapper(module):
        return False
    linear, lora = module.linear, module.lora
    frozen = not linear.weight.requires_grad and (linear.bias is None
                                                  or not linear.bias.requires_grad)
    return (frozen and lora.A.requires_grad and lora.B.requires_grad
            and linear.weight.dtype == lora.A.dtype == torch.float32)


@dataclass
class FusedLoRA:
    """What `fused_lora` changed: `count` wrappers fused, `skipped` (path: why) left alone."""

    count: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """'fused (72 layers, helpers.fused_lora)', with the layers left alone if any."""
        text = f"fused ({self.count} layers, helpers.fused_lora)"
        if self.skipped:
            text += f"; {len(self.skipped)} left as written: " + "; ".join(
                f"{path}: {why}" for path, why in self.skipped.items())
        return text


@contextmanager
def fused_lora(model: nn.Module, dtype: torch.dtype | None = None,
               check: bool = True) -> Iterator[FusedLoRA]:
    """Inside the block, LoRA wrappers of `model` compute through `FusedLoRALinear`.

    dtype: the compute dtype of the stacked weights (None: float32; torch.bfloat16 when
    training under bf16 autocast). check: compare each wrapper with its fused replacement
    (float32, random input) first; a wrapper that differs is left alone and named in
    `skipped`. Everything is put back on leaving, even after an error.
    """
    report = FusedLoRA()
    replaced: list[tuple[nn.Module, str, nn.Module]] = []
    weights: list[tuple[nn.Parameter, torch.Tensor]] = []
    paths = {id(module): path for path, module in model.named_modules()}
    generator = torch.Generator().manual_seed(0)
    try:
        for parent, name, child in children_first(model):
            if not _fusable(child):
                continue
            if check:
                probe = torch.randn(4, child.linear.in_features, generator=generator)
                probe = probe.to(child.linear.weight.device)
                with torch.no_grad():
                    error = relative_error(FusedLoRALinear(child, torch.float32), probe,
                                           child(probe))
                if not error <= FUSE_RTOL:
                    report.skipped[paths.get(id(child), name)] = (
                        f"its forward is not linear(x) + scaling * x @ A @ B ({error:.1e} away)")
                    continue
            fused = FusedLoRALinear(child, dtype or torch.float32)
            weights.append((child.linear.weight, child.linear.weight.data))
            child.linear.weight.data = fused.stacked[:fused.out_features]  # no second copy
            setattr(parent, name, fused)
            replaced.append((parent, name, child))
        report.count = len(replaced)
        yield report
    finally:
        for parent, name, child in reversed(replaced):
            setattr(parent, name, child)
        for weight, original in weights:
            weight.data = original
