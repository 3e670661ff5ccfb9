"""Merged inference: fold each LoRA update into the frozen weight it adapts, and undo it.

A LoRA-wrapped layer computes `linear(x) + scaling * (x @ A @ B)` with A (in, rank) and
B (rank, out). Since `x @ A @ B = x @ (A @ B)`, the same output comes from one plain linear
layer whose weight (out, in) is `W + scaling * (A @ B).T`: inference then costs exactly what
the original model costs, with no extra matrix products and no LoRA code at all.

Nothing here knows the lab's classes (the students write them). A module is merged when it
*looks like* the lab's `LinearWithLoRA`:

- `module.linear` is an `nn.Linear` (after merging any wrapper nested inside it);
- `module.lora` has `A` of shape (in_features, rank), `B` of shape (rank, out_features) and a
  number `scaling`.

`merge_lora(model)` adds each update to its `linear.weight` and puts the bare `linear` in the
wrapper's place in its parent module (so the wrapper's forward, and its LoRA branch, is no
longer called; nothing is monkeypatched). It returns a `LoraMerge` handle whose `undo()` puts
every wrapper back and restores the original weights bit for bit (a copy is kept; pass
`exact_undo=False` to subtract the update instead and save that memory). `merged_lora(model)`
does both around a `with` block:

    with merged_lora(model):
        label, prob = classify_text(text, model, tokenizer, device)

By default every merged layer is checked on a random input against its wrapper: a wrapper
that does not compute `linear(x) + scaling * x @ A @ B` (a LoRA branch with dropout in
training mode, a different formula) is left alone, the merge undone and a ValueError raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

MERGE_RTOL = 1e-4  # relative to the output's scale; fp32 merges are ~1e-7 off


def is_lora_wrapper(module: nn.Module) -> bool:
    """True when `module` looks like the lab's LinearWithLoRA (see the module's docstring)."""
    lora = getattr(module, "lora", None)
    linear = getattr(module, "linear", None)
    if not isinstance(linear, nn.Linear) or lora is None:
        return False
    A, B, scaling = (getattr(lora, name, None) for name in ("A", "B", "scaling"))
    if not (isinstance(A, torch.Tensor) and isinstance(B, torch.Tensor)):
        return False
    if isinstance(scaling, torch.Tensor):
        scaling_ok = scaling.numel() == 1
    else:
        scaling_ok = isinstance(scaling, (int, float)) and not isinstance(scaling, bool)
    return (scaling_ok and A.ndim == 2 and B.ndim == 2 and A.shape[1] == B.shape[0]
            and A.shape[0] == linear.in_features and B.shape[1] == linear.out_features)


def lora_update(wrapper: nn.Module) -> torch.Tensor:
    """`scaling * (A @ B).T`: the (out, in) matrix a LoRA wrapper adds to its linear weight.

    Computed in float32 (or float64 for float64 weights) whatever the parameters' dtype.
    """
    A, B = wrapper.lora.A.detach(), wrapper.lora.B.detach()
    dtype = torch.float64 if A.dtype == torch.float64 else torch.float32
    scaling = wrapper.lora.scaling
    scaling = float(scaling.detach()) if isinstance(scaling, torch.Tensor) else float(scaling)
    return scaling * (A.to(dtype) @ B.to(dtype)).T


def children_first(model: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute name, child) for every module, children before their parents."""
    for name, child in list(model.named_children()):
        yield from children_first(child)
        yield model, name, child


@dataclass
class _Merged:
    parent: nn.Module
    name: str
    wrapper: nn.Module
    original_weight: torch.Tensor | None  # exact copy, or None when undone by subtraction


@dataclass
class LoraMerge:
    """What `merge_lora` changed; `undo()` restores it (also usable as a context manager)."""

    model: nn.Module
    merged: list[_Merged] = field(default_factory=list)
    max_error: float = 0.0  # largest relative difference found by the check (0 if unchecked)
    count: int = 0          # LoRA layers merged (kept after undo)

    @property
    def active(self) -> bool:
        """True until `undo()`."""
        return bool(self.merged)

    def undo(self) -> None:
        """Put every LoRA wrapper back and restore the weights (bit for bit by default)."""
        with torch.no_grad():
            for item in reversed(self.merged):
                linear = item.wrapper.linear
                if item.original_weight is not None:
                    linear.weight.copy_(item.original_weight)
                else:
                    delta = lora_update(item.wrapper)
                    linear.weight.copy_((linear.weight.to(delta.dtype) - delta)
                                        .to(linear.weight.dtype))
                setattr(item.parent, item.name, item.wrapper)
        self.merged.clear()

    def __enter__(self) -> LoraMerge:
        return self

    def __exit__(self, *exc) -> None:
        self.undo()

    def __repr__(self) -> str:
        state = f"{self.count} LoRA layers merged" if self.active else "undone"
        return f"LoraMerge({state})"


def relative_error(module: nn.Module, probe: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest difference between `module(probe)` and `expected`, relative to their scale."""
    got = module(probe)
    scale = expected.abs().max().clamp_min(1.0)
    return ((got - expected).abs().max() / scale).item()


def merge_lora(model: nn.Module, check: bool = True, exact_undo: bool = True,
               rtol: float = MERGE_RTOL) -> LoraMerge:
    """Fold every LoRA update of `model` into its frozen weight; returns the undo handle.

    Wrappers nested in wrappers (injection run twice) are merged from the inside out.
    check: compare each merged layer with its wrapper on a random input (eval-mode
    semantics are the caller's business: merge a model in eval mode). exact_undo: keep a copy
    of each original weight so that `undo()` restores it exactly (costs the memory of the
    wrapped weights); otherwise `undo()` subtracts the update again (float rounding remains).
    A model without LoRA wrappers is left as it is (the handle's `count` is 0); `model`
    itself is never replaced, only its submodules.
    """
    handle = LoraMerge(model)
    generator = torch.Generator().manual_seed(0)
    paths = {id(module): path for path, module in model.named_modules()}
    try:
        with torch.no_grad():
            for parent, name, child in children_first(model):
                if not is_lora_wrapper(child):
                    continue
                linear = child.linear
                weight = linear.weight
                if check:
                    probe = torch.randn(4, linear.in_features, generator=generator)
                    probe = probe.to(device=weight.device, dtype=weight.dtype)
                    expected = child(probe)
                original = weight.detach().clone() if exact_undo else None
                delta = lora_update(child).to(weight.device)
                weight.copy_((weight.to(delta.dtype) + delta).to(weight.dtype))
                setattr(parent, name, linear)
                handle.merged.append(_Merged(parent, name, child, original))
                handle.count += 1
                if check:
                    error = relative_error(linear, probe, expected)
                    handle.max_error = max(handle.max_error, error)
                    tolerance = rtol if weight.dtype in (torch.float32, torch.float64) else 2e-2
                    if not error <= tolerance:
                        raise ValueError(
                            f"{type(child).__name__} at {paths.get(id(child), name)!r} does not "
                            "compute linear(x) + scaling * (x @ A @ B): its merged weight gives "
                            "outputs "
                            f"{error:.2e} away (relative) from the layer itself. Merge only "
                            "LoRA layers of the lab's form, in eval mode.")
    except BaseException:
        handle.undo()
        raise
    return handle


@contextmanager
def merged_lora(model: nn.Module, check: bool = True,
                exact_undo: bool = True) -> Iterator[LoraMerge]:
    """`with merged_lora(model): ...` runs the block on merged weights, then undoes the merge."""
    handle = merge_lora(model, check=check, exact_undo=exact_undo)
    try:
        yield handle
    finally:
        handle.undo()


def count_lora_wrappers(model: nn.Module) -> int:
    """How many modules of `model` look like the lab's LinearWithLoRA."""
    return sum(is_lora_wrapper(module) for module in model.modules())
