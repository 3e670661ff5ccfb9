"""Train or eval mode for the duration of a block, put back as it was on leaving."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """`model.train(training)` inside the block; the model's previous mode afterwards.

    The previous mode is restored even when the block raises (a KeyboardInterrupt included).
    """
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)
