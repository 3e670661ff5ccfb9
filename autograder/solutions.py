"""Reference solutions of the lab's exercises (instructor only, never released).

The hidden checks compare students' code against these, the benchmarks and tests use them,
and the master notebooks take their solution cells from here (`{{ solutions.NAME }}`): the
`### BEGIN/END SOLUTION` comments mark what nbgrader replaces by a stub in the student release.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from helpers.gpt import GPTModel


class LoRALayer(nn.Module):
    """Low-rank update x -> (alpha / rank) * x @ A @ B, with B = 0 at the start."""

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        ### BEGIN SOLUTION
        self.A = nn.Parameter(torch.empty(in_dim, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.scaling = alpha / rank
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        return self.scaling * (x @ self.A @ self.B)
        ### END SOLUTION


class LinearWithLoRA(nn.Module):
    """A frozen-able nn.Linear plus a trainable LoRA branch: linear(x) + lora(x)."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        ### BEGIN SOLUTION
        self.linear = linear
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        return self.linear(x) + self.lora(x)
        ### END SOLUTION


def replace_linear_with_lora(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    """Wrap every nn.Linear of `model` (recursively) in LinearWithLoRA, except `out_head`."""
    ### BEGIN SOLUTION
    for name, child in model.named_children():
        if name == "out_head":
            continue
        if isinstance(child, nn.Linear):
            setattr(model, name, LinearWithLoRA(child, rank, alpha))
        else:
            replace_linear_with_lora(child, rank, alpha)
    return model
    ### END SOLUTION


def freeze_and_activate_lora(model: nn.Module) -> nn.Module:
    """Freeze every parameter, then make only the LoRA matrices A and B trainable."""
    ### BEGIN SOLUTION
    for param in model.parameters():
        param.requires_grad = False
    for module in model.modules():
        if isinstance(module, LoRALayer):
            module.A.requires_grad = True
            module.B.requires_grad = True
    return model
    ### END SOLUTION


def last_token_logits(logits: torch.Tensor, last_idx: torch.Tensor) -> torch.Tensor:
    """Logits (batch, seq, C) -> (batch, C) at each sequence's last real (non-pad) token."""
    ### BEGIN SOLUTION
    return logits[torch.arange(logits.shape[0], device=logits.device), last_idx]
    ### END SOLUTION


def add_classification_head(model: nn.Module, num_classes: int = 2) -> nn.Module:
    """Replace `out_head` by a trainable num_classes head whose logits start near zero.

    With a small weight scale every class gets the same probability at first, so the initial
    loss is close to log(num_classes) whatever the features look like.
    """
    ### BEGIN SOLUTION
    head = nn.Linear(model.out_head.in_features, num_classes)
    nn.init.normal_(head.weight, std=0.02 / math.sqrt(head.in_features))
    nn.init.zeros_(head.bias)
    model.out_head = head.to(model.out_head.weight.device)
    return model
    ### END SOLUTION


def calc_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows of `logits` whose argmax equals the label."""
    ### BEGIN SOLUTION
    return (logits.argmax(dim=-1) == labels).float().mean().item()
    ### END SOLUTION


def train_step(model: nn.Module, batch, optimizer: torch.optim.Optimizer) -> float:
    """One optimisation step on a batch (input_ids, labels, last_idx); returns the loss."""
    ### BEGIN SOLUTION
    input_ids, labels, last_idx = batch
    optimizer.zero_grad(set_to_none=True)
    logits = last_token_logits(model(input_ids), last_idx)
    loss = nn.functional.cross_entropy(logits, labels)
    loss.backward()
    optimizer.step()
    return loss.item()
    ### END SOLUTION


def make_optimizer(model: nn.Module, lr: float = 5e-4, weight_decay: float = 0.1):
    """AdamW over the trainable parameters only."""
    ### BEGIN SOLUTION
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                             lr=lr, weight_decay=weight_decay)
    ### END SOLUTION


def classify_text(text: str, model: nn.Module, tokenizer, device, max_length: int | None = None):
    """('ham' or 'spam', probability of that label) for one message."""
    ### BEGIN SOLUTION
    if not text.strip():
        raise ValueError("The text is empty: give a message to classify.")
    context_length = model.pos_emb.weight.shape[0]
    max_length = context_length if max_length is None else min(max_length, context_length)
    ids = tokenizer.encode(text)[:max_length]
    input_ids = torch.tensor([ids], device=device)
    last_idx = torch.tensor([len(ids) - 1], device=device)
    model.eval()
    with torch.no_grad():
        logits = last_token_logits(model(input_ids), last_idx)
    probs = torch.softmax(logits, dim=-1)[0]
    label = int(probs.argmax())
    return ("ham", "spam")[label], probs[label].item()
    ### END SOLUTION


def lora_gpt_classifier(cfg: dict, rank: int = 8, alpha: float = 16,
                        num_classes: int | None = 2, seed: int | None = None) -> nn.Module:
    """Steps 1-4 in one call: GPTModel(cfg), LoRA on every Linear, frozen base, new head.

    num_classes=None keeps the language-model head (wrapped like the other Linear layers).
    seed: torch.manual_seed first, for reproducible random weights. For tests and benchmarks.
    """
    if seed is not None:
        torch.manual_seed(seed)
    model = GPTModel(cfg)
    replace_linear_with_lora(model, rank, alpha)
    freeze_and_activate_lora(model)
    return model if num_classes is None else add_classification_head(model, num_classes)


def lab_lora_config(rank: int, alpha: float):
    """PEFT's LoraConfig for exactly the lab's LoRA layers on Hugging Face's GPT-2."""
    ### BEGIN SOLUTION
    from peft import LoraConfig

    # q, k, v are fused in c_attn: three rank-r branches side by side are one rank-3r branch
    # (A stacked, B block-diagonal); 3 * alpha keeps its scaling at alpha / rank.
    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=["c_attn", "c_proj", "c_fc"],
                      rank_pattern={"c_attn": 3 * rank}, alpha_pattern={"c_attn": 3 * alpha},
                      fan_in_fan_out=True, lora_dropout=0.0, bias="none",
                      modules_to_save=["score"], task_type="SEQ_CLS")
    ### END SOLUTION


def to_peft_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA branches and head of the lab's `model` under PEFT's names and orientation."""
    ### BEGIN SOLUTION
    def factors(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """PEFT's (lora_A (r, in), lora_B (out, r)) from a LinearWithLoRA, either layout."""
        A, B = layer.lora.A.detach(), layer.lora.B.detach()
        if A.shape[0] == layer.linear.in_features:  # the lab's A (in, r), B (r, out)
            A, B = A.T, B.T
        return A.contiguous(), B.contiguous()

    state = {}
    for i, block in enumerate(model.trf_blocks):
        prefix = f"base_model.model.transformer.h.{i}."
        qkv = [factors(layer) for layer in (block.att.W_query, block.att.W_key, block.att.W_value)]
        state[prefix + "attn.c_attn.lora_A.weight"] = torch.cat([A for A, _ in qkv])
        state[prefix + "attn.c_attn.lora_B.weight"] = torch.block_diag(*[B for _, B in qkv])
        for lab, hf in ((block.att.out_proj, "attn.c_proj"), (block.ff.layers[0], "mlp.c_fc"),
                        (block.ff.layers[2], "mlp.c_proj")):
            state[prefix + hf + ".lora_A.weight"], state[prefix + hf + ".lora_B.weight"] = factors(lab)
    state["base_model.model.score.weight"] = model.out_head.weight.detach().clone()
    state["base_model.model.score.bias"] = model.out_head.bias.detach().clone()
    return state
    ### END SOLUTION
