"""The shape every classifier output must have here: one row of C logits per example."""

from __future__ import annotations

import torch

GPT_HINT = ("A GPT-2 classifier gives (batch, seq, C): keep one row per message, at its last "
            "real token (last_token_logits).")


def class_logits_problem(logits: torch.Tensor, batch_size: int, source: str = "logits_fn",
                         num_classes: int | None = None) -> str | None:
    """What is wrong with the shape of `logits` for `batch_size` examples, or None.

    Expected: (batch_size, C), with C = num_classes when it is given.
    """
    if (logits.ndim == 2 and logits.shape[0] == batch_size > 0
            and (num_classes is None or logits.shape[1] == num_classes)):
        return None
    columns = "C" if num_classes is None else num_classes
    return (f"{source} gave logits of shape {tuple(logits.shape)}, expected (batch, "
            f"num_classes) = ({batch_size}, {columns}). {GPT_HINT}")


def check_class_logits(logits: torch.Tensor, batch_size: int, source: str = "logits_fn",
                       num_classes: int | None = None) -> torch.Tensor:
    """`logits` when they are (batch_size, C) (see `class_logits_problem`); else a ValueError."""
    problem = class_logits_problem(logits, batch_size, source, num_classes)
    if problem:
        raise ValueError(problem)
    return logits
