"""Known mistakes of the lab, recognised from their exact signatures: what went wrong, where to look.

The notebooks' visible tests and the grader's hidden checks both call these functions, so a
student reads the same diagnosis in JupyterLab's Validate and in the graded feedback. Each
function returns a message naming the mistake and the place to look (never the code to write),
or None when the object shows none of the mistakes known here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LORA_RANK_8 = 1_327_104        # LoRA on GPT-2 small's 72 linear layers besides out_head, rank 8
OUT_HEAD_LORA = 8 * (768 + 50_257)  # 408,200: a rank-8 branch on out_head


def _is_wrapper(module: nn.Module) -> bool:
    return hasattr(module, "linear") and hasattr(module, "lora")


def _wrapper_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if _is_wrapper(module)]


def _count(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def _lora_flags(model: nn.Module, matrix: str) -> list[bool]:
    """requires_grad of every LoRA matrix `matrix` ('A' or 'B') of the wrapped layers."""
    flags = []
    for name in _wrapper_names(model):
        lora = model.get_submodule(name).lora
        tensor = getattr(lora, matrix, None)
        if isinstance(tensor, torch.Tensor):
            flags.append(bool(tensor.requires_grad))
    return flags


def _coverage_mistake(wrapped: list[str]) -> str | None:
    """GPT-2 blocks where only the attention, or only the feed-forward, layers are wrapped."""
    in_attention = [n for n in wrapped if ".att." in f".{n}."]
    in_feed_forward = [n for n in wrapped if ".ff." in f".{n}."]
    if in_attention and not in_feed_forward:
        return ("only the attention layers are wrapped (W_query, W_key, W_value, out_proj): the "
                "feed-forward layers ff.layers[0] and ff.layers[2] are nn.Linear too. Wrap every "
                "nn.Linear your recursion reaches, whatever its name (except out_head).")
    if in_feed_forward and not in_attention:
        return ("only the feed-forward layers are wrapped: the attention projections W_query, "
                "W_key, W_value and out_proj are nn.Linear too. Recurse into every child.")
    return None


def injection_mistake(model: nn.Module) -> str | None:
    """The known step-3 mistake (injection or freezing) behind `model`'s state, if any."""
    trainable, total = _count(model)
    wrapped = _wrapper_names(model)
    if _is_wrapper(getattr(model, "out_head", nn.Identity())):
        arithmetic = ""
        if trainable == LORA_RANK_8 + OUT_HEAD_LORA:
            arithmetic = f"{trainable:,} = {LORA_RANK_8:,} + {OUT_HEAD_LORA:,}: "
        return (f"{arithmetic}the LoRA branch of `out_head` (8 x (768 + 50,257)). out_head is "
                "wrapped too: skip the module named `out_head` (step 4 replaces it, and "
                "`model.out_head.in_features` fails on a wrapper).")
    nested = [n for n in wrapped if any(n.startswith(o + ".") for o in wrapped)]
    if nested:
        arithmetic = f"{trainable:,} = 2 x {LORA_RANK_8:,}: " if trainable == 2 * LORA_RANK_8 else ""
        return (f"{arithmetic}{len(nested)} layers are wrapped twice (e.g. `{nested[0]}`): the "
                "injection ran twice on the same model. Re-run the cell that builds the model, "
                "then inject once.")
    coverage = _coverage_mistake(wrapped)
    if coverage:
        return f"{trainable:,} trainable parameters: {coverage}"
    a_flags, b_flags = _lora_flags(model, "A"), _lora_flags(model, "B")
    if a_flags and all(a_flags) and not any(b_flags):
        return (f"{trainable:,} trainable parameters, LoRA's A only: B is still frozen. After "
                "freezing everything, make both A and B of every LoRA layer trainable.")
    if b_flags and all(b_flags) and not any(a_flags):
        return (f"{trainable:,} trainable parameters, LoRA's B only: A is still frozen. After "
                "freezing everything, make both A and B of every LoRA layer trainable.")
    not_frozen = [n for n, p in model.named_parameters()
                   if p.requires_grad and not n.endswith(("lora.A", "lora.B"))]
    if wrapped and not_frozen:
        return (f"{trainable:,} of {total:,} parameters are trainable, including `{not_frozen[0]}`: "
                "the pretrained weights must be frozen (requires_grad False on every parameter "
                "first, then True on LoRA's A and B only).")
    return None


def head_mistake(model: nn.Module, num_classes: int = 2) -> str | None:
    """The known step-4 mistake behind the classification head of `model`, if any."""
    head = getattr(model, "out_head", None)
    if head is not None and _is_wrapper(head):
        return ("out_head is a LoRA wrapper, not the new head: step 3 must skip the module "
                "named `out_head`, and step 4 replaces it by a plain nn.Linear.")
    if not isinstance(head, nn.Linear):
        return None
    trainable, _ = _count(model)
    if head.out_features != num_classes:
        return (f"out_head still has {head.out_features:,} outputs: replace it by a new "
                f"nn.Linear with {num_classes} outputs (assign it to model.out_head).")
    if not any(p.requires_grad for p in head.parameters()):
        lora_only = f"{trainable:,} trainable = LoRA alone: " if trainable == LORA_RANK_8 else ""
        return (f"{lora_only}the new head is frozen (its {sum(p.numel() for p in head.parameters()):,} "
                "parameters have requires_grad False). A fresh nn.Linear is trainable: do not "
                "freeze the model again after adding the head.")
    return None


def scaling_mistake(scaling: float, rank: int, alpha: float) -> str | None:
    """Whether a LoRA layer's scaling is alpha (or rank / alpha) instead of alpha / rank."""
    def near(value: float) -> bool:
        return math.isclose(scaling, value, rel_tol=1e-4)

    if near(alpha / rank):
        return None
    if near(alpha):
        return (f"scaling is {scaling:g} = alpha, not alpha / rank = {alpha / rank:g}: divide "
                "by the rank (the update would grow with the rank).")
    if near(rank / alpha):
        return f"scaling is {scaling:g} = rank / alpha, upside down: it is alpha / rank."
    return None


def last_token_mistake(last_token_logits) -> str | None:
    """Whether `last_token_logits` reads the last (padding) position or the first token."""
    logits = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    last_idx = torch.tensor([1, 2])
    try:
        out = last_token_logits(logits, last_idx)
    except Exception:  # noqa: BLE001 - any error is for the student's own checks to show
        return None
    if not isinstance(out, torch.Tensor) or out.shape != (2, 3):
        return None
    if torch.equal(out, logits[:, -1]):
        return ("you read the last position of every row: for each message shorter than the "
                "batch's longest that is a padding token (id 50256), not the message. Read row "
                "b at position last_idx[b].")
    if torch.equal(out, logits[:, 0]):
        return "you read the first token of every message: read row b at position last_idx[b]."
    return None
