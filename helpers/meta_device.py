"""Models built on PyTorch's meta device: every shape and parameter count, no memory, no values.

`torch.device("meta")` alone still runs each layer's weight initialiser on the empty tensors,
and torch implements the meta `normal_` in Python behind `torch._dynamo`, which it imports on
first use (about 2 s on a small CPU). `on_meta_device()` also skips `torch.nn.init`'s
initialisers meanwhile: on tensors without values they have nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
                "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                "kaiming_normal_", "orthogonal_", "sparse_")


def _skip(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


@contextmanager
def on_meta_device() -> Iterator[None]:
    """Build modules on the meta device with `torch.nn.init`'s initialisers skipped."""
    saved = {name: getattr(nn.init, name) for name in INITIALISERS}
    try:
        for name in INITIALISERS:
            setattr(nn.init, name, _skip)
        with torch.device("meta"):
            yield
    finally:
        for name, initialiser in saved.items():
            setattr(nn.init, name, initialiser)
