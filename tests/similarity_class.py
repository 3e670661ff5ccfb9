"""A class of example submissions for the similarity tests and benchmark (notebooks not run).

`IMPLEMENTATIONS[grade_id]` holds six distinct correct implementations of each exercise cell
(tests/test_similarity.py runs the grader's hidden checks on them), written in different
styles (the lab's and PEFT's LoRA orientation, recursive and iterative injection, ...).
`ANSWERS` holds six students' own written answers and report sections.
`write_student` puts them into copies of the release notebooks; `disguise` makes a copy the way
a copier would (local variables renamed, functions reordered, code reformatted).
"""

from __future__ import annotations

import ast
import random
import re
import textwrap
from pathlib import Path

import nbformat

from autograder.build.course import RELEASE_DIR
from autograder.build.notebook_source import NOTEBOOK_NAMES
from helpers.report_check import TEMPLATE_PATH

LORA_LAYER = [
    '''class LoRALayer(nn.Module):
    """Low-rank update x -> (alpha / rank) * x @ A @ B, with B = 0 at the start."""

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        # YOUR CODE HERE
        self.A = nn.Parameter(torch.empty(in_dim, rank))
        torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.alpha = alpha
        self.rank = rank
        self.scaling = self.alpha / self.rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # YOUR CODE HERE
        return (x @ self.A @ self.B) * self.scaling''',
    '''class LoRALayer(nn.Module):
    """Low-rank update x -> (alpha / rank) * x @ A @ B, with B = 0 at the start."""

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        # PEFT orientation: A is (rank, in_dim), B is (out_dim, rank)
        self.A = nn.Parameter(torch.zeros(rank, in_dim))
        self.B = nn.Parameter(torch.zeros(out_dim, rank))
        nn.init.kaiming_uniform_(self.A, a=5 ** 0.5)
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.A.T
        return self.scaling * (h @ self.B.T)''',
    '''class LoRALayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        weights_a = torch.empty(in_dim, rank)
        nn.init.kaiming_uniform_(weights_a, a=math.sqrt(5))
        self.A = nn.Parameter(weights_a)
        self.B = nn.Parameter(torch.zeros((rank, out_dim)))
        self.scaling = float(alpha) / float(rank)

    def forward(self, x):
        projected = torch.matmul(x, self.A)
        return torch.matmul(projected, self.B) * self.scaling''',
    '''class LoRALayer(nn.Module):
    """Low-rank update x -> (alpha / rank) * x @ A @ B, with B = 0 at the start."""

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        # kaiming_uniform_(a=sqrt(5)) on a (in_dim, rank) tensor is U(-1/sqrt(rank), 1/sqrt(rank))
        bound = 1.0 / math.sqrt(rank)
        self.A = nn.Parameter(torch.rand(in_dim, rank) * 2 * bound - bound)
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.A
        out = out @ self.B
        return out * self.scaling''',
    '''class LoRALayer(nn.Module):
    """Low-rank update x -> (alpha / rank) * x @ A @ B, with B = 0 at the start."""

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        self.A = nn.Parameter(nn.init.kaiming_uniform_(torch.empty(in_dim, rank), a=math.sqrt(5)))
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaling * torch.einsum("...i,ir,ro->...o", x, self.A, self.B)''',
    '''class LoRALayer(nn.Module):
    """Low-rank update x -> (alpha / rank) * x @ A @ B, with B = 0 at the start."""

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        self.rank = rank
        self.scaling = alpha / rank
        self.A = nn.Parameter(torch.empty(rank, in_dim))
        self.B = nn.Parameter(torch.empty(out_dim, rank))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        nn.init.zeros_(self.B)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        down = nn.functional.linear(x, self.A)
        return nn.functional.linear(down, self.B) * self.scaling''',
]

LINEAR_WITH_LORA = [
    '''class LinearWithLoRA(nn.Module):
    """A frozen-able nn.Linear plus a trainable LoRA branch: linear(x) + lora(x)."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.linear = linear
        in_features, out_features = linear.in_features, linear.out_features
        self.lora = LoRALayer(in_features, out_features, rank, alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.linear(x)
        return base + self.lora(x)''',
    '''class LinearWithLoRA(nn.Module):
    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.linear = linear  # same object, not a copy
        self.lora = LoRALayer(linear.weight.shape[1], linear.weight.shape[0], rank, alpha)

    def forward(self, x):
        return self.lora(x) + self.linear(x)''',
    '''class LinearWithLoRA(nn.Module):
    """A frozen-able nn.Linear plus a trainable LoRA branch: linear(x) + lora(x)."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        d_in = linear.weight.size(1)
        d_out = linear.weight.size(0)
        self.linear = linear
        self.lora = LoRALayer(d_in, d_out, rank, alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.linear(x)
        result = result + self.lora(x)
        return result''',
    '''class LinearWithLoRA(nn.Module):
    """A frozen-able nn.Linear plus a trainable LoRA branch: linear(x) + lora(x)."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.add_module("linear", linear)
        self.add_module("lora", LoRALayer(linear.in_features, linear.out_features, rank, alpha))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.add(self.linear(x), self.lora(x))''',
    '''class LinearWithLoRA(nn.Module):
    """A frozen-able nn.Linear plus a trainable LoRA branch: linear(x) + lora(x)."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.linear = linear
        self.rank = rank
        self.alpha = alpha
        self.lora = LoRALayer(in_dim=linear.in_features, out_dim=linear.out_features,
                              rank=rank, alpha=alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.lora(x)''',
    '''class LinearWithLoRA(nn.Module):
    """A frozen-able nn.Linear plus a trainable LoRA branch: linear(x) + lora(x)."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.linear = linear
        self.lora = LoRALayer(*self._dims(linear), rank, alpha)

    @staticmethod
    def _dims(layer: nn.Linear) -> tuple[int, int]:
        return layer.in_features, layer.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lora_out = self.lora(x)
        return self.linear(x) + lora_out''',
]

REPLACE_LINEAR = [
    '''def replace_linear_with_lora(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    """Wrap every nn.Linear of `model` (recursively) in LinearWithLoRA, except `out_head`."""
    for child_name, module in list(model.named_children()):
        if isinstance(module, nn.Linear) and child_name != "out_head":
            setattr(model, child_name, LinearWithLoRA(module, rank, alpha))
        elif child_name != "out_head":
            replace_linear_with_lora(module, rank, alpha)
    return model''',
    '''def replace_linear_with_lora(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    # iterative: collect (parent, name, layer) first, then swap
    targets = []
    for _, parent in model.named_modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Linear) and child_name != "out_head":
                targets.append((parent, child_name, child))
    for parent, child_name, child in targets:
        setattr(parent, child_name, LinearWithLoRA(child, rank, alpha))
    return model''',
    '''def replace_linear_with_lora(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    """Wrap every nn.Linear of `model` (recursively) in LinearWithLoRA, except `out_head`."""
    stack = [model]
    while stack:
        module = stack.pop()
        for key in list(module._modules):
            child = module._modules[key]
            if key == "out_head" or child is None:
                continue
            if isinstance(child, nn.Linear):
                module._modules[key] = LinearWithLoRA(child, rank, alpha)
            else:
                stack.append(child)
    return model''',
    '''def replace_linear_with_lora(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    """Wrap every nn.Linear of `model` (recursively) in LinearWithLoRA, except `out_head`."""

    def visit(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if name == "out_head":
                continue
            if isinstance(child, nn.Linear):
                parent.add_module(name, LinearWithLoRA(child, rank, alpha))
            else:
                visit(child)

    visit(model)
    return model''',
    '''def replace_linear_with_lora(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    """Wrap every nn.Linear of `model` (recursively) in LinearWithLoRA, except `out_head`."""
    names = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.split(".")[-1] != "out_head"]
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, LinearWithLoRA(getattr(parent, attr), rank, alpha))
    return model''',
    '''def replace_linear_with_lora(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    """Wrap every nn.Linear of `model` (recursively) in LinearWithLoRA, except `out_head`."""
    # YOUR CODE HERE
    for key, sub in model._modules.items():
        if key == "out_head":
            pass
        elif isinstance(sub, nn.Linear):
            model._modules[key] = LinearWithLoRA(sub, rank=rank, alpha=alpha)
        elif sub is not None:
            replace_linear_with_lora(sub, rank=rank, alpha=alpha)
    return model''',
]

FREEZE = [
    '''def freeze_and_activate_lora(model: nn.Module) -> nn.Module:
    """Freeze every parameter, then make only the LoRA matrices A and B trainable."""
    for name, param in model.named_parameters():
        param.requires_grad = name.endswith("lora.A") or name.endswith("lora.B")
    return model''',
    '''def freeze_and_activate_lora(model: nn.Module) -> nn.Module:
    model.requires_grad_(False)
    for module in model.modules():
        if isinstance(module, LoRALayer):
            module.requires_grad_(True)
    return model''',
    '''def freeze_and_activate_lora(model: nn.Module) -> nn.Module:
    """Freeze every parameter, then make only the LoRA matrices A and B trainable."""
    for p in model.parameters():
        p.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, LinearWithLoRA):
            m.lora.A.requires_grad_(True)
            m.lora.B.requires_grad_(True)
    return model''',
    '''def freeze_and_activate_lora(model: nn.Module) -> nn.Module:
    """Freeze every parameter, then make only the LoRA matrices A and B trainable."""
    for name, param in model.named_parameters():
        parts = name.rsplit(".", 2)
        param.requires_grad = len(parts) >= 2 and parts[-2] == "lora" and parts[-1] in {"A", "B"}
    return model''',
    '''def freeze_and_activate_lora(model: nn.Module) -> nn.Module:
    """Freeze every parameter, then make only the LoRA matrices A and B trainable."""
    lora_ids = set()
    for module in model.modules():
        if isinstance(module, LoRALayer):
            lora_ids.update({id(module.A), id(module.B)})
    for parameter in model.parameters():
        parameter.requires_grad = id(parameter) in lora_ids
    return model''',
    '''def freeze_and_activate_lora(model: nn.Module) -> nn.Module:
    """Freeze every parameter, then make only the LoRA matrices A and B trainable."""
    # YOUR CODE HERE
    for param in model.parameters():
        param.requires_grad = False
    lora_layers = [m for m in model.modules() if isinstance(m, LoRALayer)]
    for layer in lora_layers:
        for p in (layer.A, layer.B):
            p.requires_grad = True
    return model''',
]

HEAD = [
    '''def add_classification_head(model: nn.Module, num_classes: int = 2) -> nn.Module:
    """Replace `out_head` by a trainable num_classes head whose logits start near zero.

    With a small weight scale every class gets the same probability at first, so the initial
    loss is close to log(num_classes) whatever the features look like.
    """
    in_features = model.out_head.in_features
    device = model.out_head.weight.device
    model.out_head = nn.Linear(in_features, num_classes).to(device)
    with torch.no_grad():
        model.out_head.weight.mul_(0.01)
        model.out_head.bias.zero_()
    return model''',
    '''def add_classification_head(model: nn.Module, num_classes: int = 2) -> nn.Module:
    old = model.out_head
    head = nn.Linear(old.in_features, num_classes, bias=True, device=old.weight.device)
    nn.init.zeros_(head.weight)  # zero logits: the loss starts at exactly log(C)
    nn.init.zeros_(head.bias)
    model.out_head = head
    return model''',
    '''def add_classification_head(model: nn.Module, num_classes: int = 2) -> nn.Module:
    """Replace `out_head` by a trainable num_classes head whose logits start near zero.

    With a small weight scale every class gets the same probability at first, so the initial
    loss is close to log(num_classes) whatever the features look like.
    """
    emb_dim = model.out_head.weight.shape[1]
    new_head = torch.nn.Linear(emb_dim, num_classes)
    torch.nn.init.normal_(new_head.weight, mean=0.0, std=1e-3)
    torch.nn.init.constant_(new_head.bias, 0.0)
    new_head.to(next(model.parameters()).device)
    setattr(model, "out_head", new_head)
    for p in model.out_head.parameters():
        p.requires_grad = True
    return model''',
    '''def add_classification_head(model: nn.Module, num_classes: int = 2) -> nn.Module:
    """Replace `out_head` by a trainable num_classes head whose logits start near zero.

    With a small weight scale every class gets the same probability at first, so the initial
    loss is close to log(num_classes) whatever the features look like.
    """
    d = model.out_head.in_features
    head = nn.Linear(d, num_classes)
    head.weight.data.copy_(torch.randn(num_classes, d) * 0.001)
    head.bias.data.fill_(0)
    model.out_head = head.to(model.out_head.weight.device)
    model.out_head.requires_grad_(True)
    return model''',
    '''def add_classification_head(model: nn.Module, num_classes: int = 2) -> nn.Module:
    """Replace `out_head` by a trainable num_classes head whose logits start near zero.

    With a small weight scale every class gets the same probability at first, so the initial
    loss is close to log(num_classes) whatever the features look like.
    """
    device = next(model.out_head.parameters()).device
    hidden = model.out_head.in_features
    model.out_head = nn.Linear(in_features=hidden, out_features=num_classes)
    nn.init.xavier_uniform_(model.out_head.weight, gain=1e-3)
    nn.init.zeros_(model.out_head.bias)
    model.out_head.to(device)
    return model''',
    '''def add_classification_head(model: nn.Module, num_classes: int = 2) -> nn.Module:
    """Replace `out_head` by a trainable num_classes head whose logits start near zero.

    With a small weight scale every class gets the same probability at first, so the initial
    loss is close to log(num_classes) whatever the features look like.
    """
    # YOUR CODE HERE
    head = nn.Linear(model.out_head.in_features, num_classes)
    with torch.no_grad():
        head.weight.uniform_(-1e-3, 1e-3)
        head.bias.fill_(0.0)
    reference = model.out_head.weight
    model.out_head = head.to(device=reference.device, dtype=reference.dtype)
    return model''',
]

LAST_TOKEN = [
    '''def last_token_logits(logits: torch.Tensor, last_idx: torch.Tensor) -> torch.Tensor:
    """Logits (batch, seq, C) -> (batch, C) at each sequence's last real (non-pad) token."""
    return logits[torch.arange(logits.size(0)), last_idx]''',
    '''def last_token_logits(logits: torch.Tensor, last_idx: torch.Tensor) -> torch.Tensor:
    index = last_idx.view(-1, 1, 1).expand(-1, 1, logits.size(-1))
    return logits.gather(1, index).squeeze(1)''',
    '''def last_token_logits(logits: torch.Tensor, last_idx: torch.Tensor) -> torch.Tensor:
    """Logits (batch, seq, C) -> (batch, C) at each sequence's last real (non-pad) token."""
    rows = [logits[i, j] for i, j in enumerate(last_idx.tolist())]
    return torch.stack(rows)''',
    '''def last_token_logits(logits: torch.Tensor, last_idx: torch.Tensor) -> torch.Tensor:
    """Logits (batch, seq, C) -> (batch, C) at each sequence's last real (non-pad) token."""
    batch = logits.shape[0]
    rows = torch.arange(batch, device=logits.device)
    return logits[rows, last_idx.to(logits.device)]''',
    '''def last_token_logits(logits: torch.Tensor, last_idx: torch.Tensor) -> torch.Tensor:
    """Logits (batch, seq, C) -> (batch, C) at each sequence's last real (non-pad) token."""
    picked = []
    for b in range(len(last_idx)):
        picked.append(logits[b, last_idx[b], :])
    return torch.stack(picked, dim=0)''',
    '''def last_token_logits(logits: torch.Tensor, last_idx: torch.Tensor) -> torch.Tensor:
    """Logits (batch, seq, C) -> (batch, C) at each sequence's last real (non-pad) token."""
    mask = nn.functional.one_hot(last_idx, num_classes=logits.shape[1]).to(logits.dtype)
    return torch.einsum("bsc,bs->bc", logits, mask)''',
]

OPTIMIZER = [
    '''def make_optimizer(model: nn.Module, lr: float = 5e-4, weight_decay: float = 0.1):
    """AdamW over the trainable parameters only."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)''',
    '''def make_optimizer(model: nn.Module, lr: float = 5e-4, weight_decay: float = 0.1):
    return torch.optim.AdamW(filter(lambda p: p.requires_grad, model.parameters()), lr,
                             weight_decay=weight_decay)''',
    '''def make_optimizer(model: nn.Module, lr: float = 5e-4, weight_decay: float = 0.1):
    """AdamW over the trainable parameters only."""
    from torch.optim import AdamW

    trainable = []
    for _, param in model.named_parameters():
        if param.requires_grad:
            trainable.append(param)
    optimizer = AdamW(trainable, lr=lr, weight_decay=weight_decay)
    return optimizer''',
    '''def make_optimizer(model: nn.Module, lr: float = 5e-4, weight_decay: float = 0.1):
    """AdamW over the trainable parameters only."""
    group = {"params": [p for _, p in model.named_parameters() if p.requires_grad]}
    return torch.optim.AdamW(params=[group], lr=lr, weight_decay=weight_decay)''',
    '''def make_optimizer(model: nn.Module, lr: float = 5e-4, weight_decay: float = 0.1):
    """AdamW over the trainable parameters only."""
    wanted = list(p for p in model.parameters() if p.requires_grad)
    assert wanted, "nothing to train: call freeze_and_activate_lora first"
    return torch.optim.AdamW(wanted, lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay)''',
    '''def make_optimizer(model: nn.Module, lr: float = 5e-4, weight_decay: float = 0.1):
    """AdamW over the trainable parameters only."""
    groups = {"params": [], "lr": lr, "weight_decay": weight_decay}
    for parameter in model.parameters():
        if parameter.requires_grad:
            groups["params"].append(parameter)
    return torch.optim.AdamW([groups])''',
]

ACCURACY = [
    '''def calc_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows of `logits` whose argmax equals the label."""
    predictions = torch.argmax(logits, dim=1)
    correct = (predictions == labels).sum().item()
    return correct / labels.numel()''',
    '''def calc_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(-1) == labels).float().mean().item()''',
    '''def calc_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows of `logits` whose argmax equals the label."""
    preds = logits.max(dim=1).indices
    return float((preds == labels).double().mean())''',
    '''def calc_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows of `logits` whose argmax equals the label."""
    n = len(labels)
    hits = sum(int(p == t) for p, t in zip(logits.argmax(1).tolist(), labels.tolist()))
    return hits / n''',
    '''def calc_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows of `logits` whose argmax equals the label."""
    if labels.numel() == 0:
        raise ValueError("no labels")
    _, predicted = torch.max(logits, 1)
    return torch.eq(predicted, labels).sum().item() / labels.size(0)''',
    '''def calc_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows of `logits` whose argmax equals the label."""
    import numpy as np

    guesses = logits.detach().cpu().numpy().argmax(axis=1)
    return float(np.mean(guesses == labels.cpu().numpy()))''',
]

TRAIN_STEP = [
    '''def train_step(model: nn.Module, batch, optimizer: torch.optim.Optimizer) -> float:
    """One optimisation step on a batch (input_ids, labels, last_idx); returns the loss."""
    input_ids, labels, last_idx = batch
    model.train()
    optimizer.zero_grad()
    logits = model(input_ids)
    logits = last_token_logits(logits, last_idx)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    optimizer.step()
    return float(loss.detach())''',
    '''def train_step(model: nn.Module, batch, optimizer: torch.optim.Optimizer) -> float:
    ids, y, last = batch
    out = last_token_logits(model(ids), last)
    loss = nn.CrossEntropyLoss()(out, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach().item()''',
    '''def train_step(model: nn.Module, batch, optimizer: torch.optim.Optimizer) -> float:
    """One optimisation step on a batch (input_ids, labels, last_idx); returns the loss."""
    device = next(model.parameters()).device
    input_ids, labels, last_idx = (t.to(device) for t in batch)
    logits_all = model(input_ids)
    selected = logits_all[torch.arange(len(last_idx)), last_idx]
    loss = nn.functional.cross_entropy(selected, labels)
    for p in model.parameters():
        p.grad = None
    loss.backward()
    optimizer.step()
    return loss.item()''',
    '''def train_step(model: nn.Module, batch, optimizer: torch.optim.Optimizer) -> float:
    """One optimisation step on a batch (input_ids, labels, last_idx); returns the loss."""
    x, labels, last_idx = batch
    optimizer.zero_grad()
    log_probs = torch.log_softmax(last_token_logits(model(x), last_idx), dim=-1)
    loss = torch.nn.functional.nll_loss(log_probs, labels)
    loss.backward()
    optimizer.step()
    return loss.item()''',
    '''def train_step(model: nn.Module, batch, optimizer: torch.optim.Optimizer) -> float:
    """One optimisation step on a batch (input_ids, labels, last_idx); returns the loss."""
    model.train()
    inputs = batch[0]
    targets = batch[1]
    positions = batch[2]
    predictions = last_token_logits(model(inputs), positions)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="mean")
    loss = loss_fn(predictions, targets)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    value = loss.item()
    return value''',
    '''def train_step(model: nn.Module, batch, optimizer: torch.optim.Optimizer) -> float:
    """One optimisation step on a batch (input_ids, labels, last_idx); returns the loss."""
    # YOUR CODE HERE
    input_ids, labels, last_idx = batch
    logits = last_token_logits(model(input_ids), last_idx)
    loss = -torch.log_softmax(logits, dim=1).gather(1, labels.unsqueeze(1)).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()''',
]

CLASSIFY = [
    '''def classify_text(text: str, model: nn.Module, tokenizer, device, max_length: int | None = None):
    """('ham' or 'spam', probability of that label) for one message."""
    if text is None or len(text.strip()) == 0:
        raise ValueError("empty text")
    tokens = tokenizer.encode(text)
    context = model.pos_emb.weight.shape[0]
    limit = context if max_length is None else min(max_length, context)
    x = torch.tensor(tokens[:limit], device=device).unsqueeze(0)
    model.eval()
    with torch.no_grad():
        logits = model(x)[:, -1, :]
    probabilities = torch.softmax(logits, dim=-1).squeeze(0)
    predicted = probabilities.argmax().item()
    label = "spam" if predicted == 1 else "ham"
    return label, probabilities[predicted].item()''',
    '''LABELS = {0: "ham", 1: "spam"}


def classify_text(text: str, model: nn.Module, tokenizer, device, max_length: int | None = None):
    if not text or not text.strip():
        raise ValueError("Cannot classify an empty message.")
    ctx = model.pos_emb.num_embeddings
    n = ctx if max_length is None else min(ctx, max_length)
    ids = tokenizer.encode(text)[:n]
    model.eval()
    with torch.inference_mode():
        out = model(torch.tensor([ids]).to(device))
        probs = out[0, len(ids) - 1].softmax(dim=0)
    conf, idx = probs.max(dim=0)
    return LABELS[int(idx)], float(conf)''',
    '''def classify_text(text: str, model: nn.Module, tokenizer, device, max_length: int | None = None):
    """('ham' or 'spam', probability of that label) for one message."""
    if text.strip() == "":
        raise ValueError("text must not be empty")
    max_tokens = model.pos_emb.weight.size(0)
    if max_length is not None:
        max_tokens = min(max_tokens, max_length)
    encoded = tokenizer.encode(text)[:max_tokens]
    batch = torch.tensor(encoded, dtype=torch.long, device=device)[None, :]
    last = torch.tensor([batch.shape[1] - 1], device=device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        p = torch.nn.functional.softmax(last_token_logits(model(batch), last), dim=1)[0]
    model.train(was_training)
    i = int(torch.argmax(p))
    return ["ham", "spam"][i], float(p[i])''',
    '''def classify_text(text: str, model: nn.Module, tokenizer, device, max_length: int | None = None):
    """('ham' or 'spam', probability of that label) for one message."""
    if not text.strip():
        raise ValueError("The message is empty.")
    token_ids = tokenizer.encode(text)
    context = model.pos_emb.weight.shape[0]
    if max_length:
        context = min(context, max_length)
    token_ids = token_ids[:context]
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor(token_ids, device=device).view(1, -1))
    last = logits[0, -1]
    probs = torch.exp(last - torch.logsumexp(last, dim=0))
    if probs[1] > probs[0]:
        return "spam", probs[1].item()
    return "ham", probs[0].item()''',
    '''def classify_text(text: str, model: nn.Module, tokenizer, device, max_length: int | None = None):
    """('ham' or 'spam', probability of that label) for one message."""
    if len(text.split()) == 0:
        raise ValueError("Empty message: nothing to classify")
    allowed = model.pos_emb.weight.shape[0] if max_length is None else max_length
    allowed = min(allowed, model.pos_emb.weight.shape[0])
    ids = torch.tensor(tokenizer.encode(text)[:allowed], device=device)
    model.eval()
    with torch.no_grad():
        scores = model(ids.unsqueeze(0)).squeeze(0)[-1]
    probs = scores.softmax(-1).cpu().numpy()
    k = int(probs.argmax())
    return ("ham", "spam")[k], float(probs[k])''',
    '''def _probabilities(ids: list[int], model: nn.Module, device) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=device))
    return torch.softmax(logits[0, -1], dim=-1)


def classify_text(text: str, model: nn.Module, tokenizer, device, max_length: int | None = None):
    """('ham' or 'spam', probability of that label) for one message."""
    if not text.strip():
        raise ValueError("Please give a non-empty text.")
    length = model.pos_emb.weight.shape[0]
    if max_length is not None and max_length < length:
        length = max_length
    probs = _probabilities(tokenizer.encode(text)[:length], model, device)
    winner = int(probs.argmax())
    return {0: "ham", 1: "spam"}[winner], probs[winner].item()''',
]

IMPLEMENTATIONS: dict[str, list[str]] = {
    "lora_layer": LORA_LAYER,
    "linear_with_lora": LINEAR_WITH_LORA,
    "replace_linear_with_lora": REPLACE_LINEAR,
    "freeze_and_activate_lora": FREEZE,
    "add_classification_head": HEAD,
    "last_token_logits": LAST_TOKEN,
    "make_optimizer": OPTIMIZER,
    "calc_accuracy": ACCURACY,
    "train_step": TRAIN_STEP,
    "classify_text": CLASSIFY,
}
TRAINABLE_LINE = "trainable params: 1,327,104 || all params: 164,364,288 || trainable%: 0.8074"

# Each student's own words: q1-q5 (notebooks and report), then the report's other sections.
ANSWERS: list[dict[str, str]] = [
    {"q1": "Each Linear inside attention and the feed-forward part is now a LinearWithLoRA that "
           "holds the old layer plus a lora branch. Layer norms, embeddings and out_head did not "
           "move. Since B starts at zero the branch adds nothing, so the outputs are the same.",
     "q2": f"{TRAINABLE_LINE}. By hand: 12 blocks, each with qkv (3 x 8 x (768+768)), the "
           "projection 8 x (768+768) and the MLP 8 x (768+3072) twice, which sums to 1,327,104.",
     "q3": "1,328,642 trainable of 125,768,450. The total went down because the 50257-way output "
           "layer is gone and the new head only has 768 x 2 + 2 weights. Initial loss 0.69, and "
           "log(2) = 0.693.",
     "q4": "The per-batch loss is noisy but falls quickly during the first epoch and then slowly. "
           "Train 94%, validation 96%, test 95.7%, about 70 seconds per epoch on my laptop.",
     "q5": "Test is a bit higher than train because the training accuracy is an average over an "
           "epoch that starts from an untrained model, measured with dropout on.",
     "s1": "B à zéro rend la mise à jour nulle au départ, A aléatoire permet au gradient de B "
           "d'être non nul. alpha / rank garde la même échelle quand on change le rang.",
     "s2": "Le wrapper garde la même couche pour partager ses poids gelés sans doubler la "
           "mémoire : une copie serait entraînée à part.",
     "s6": "Le message gagnant est classé spam à 0,99, l'autre ham à 0,98. Mon message ambigu "
           "« appelle-moi pour le prix » est classé spam à tort.",
     "conclusion": "LoRA entraîne moins de un pour cent des poids, tient en mémoire sur un "
                   "portable et donne presque la même qualité ; la limite vue : le rang fixe."},
    {"q1": "After injection the attention projections and MLP layers print as LinearWithLoRA "
           "with an inner linear and a LoRALayer. Nothing else in the block changed. The model "
           "gives identical logits because the update x A B is zero while B is all zeros.",
     "q2": f"My notebook printed: {TRAINABLE_LINE}. Per block the LoRA parameters are r times "
           "(in + out) for the six wrapped Linear layers: 8*(2304+768)... summing everything "
           "over 12 blocks gives 110,592 per block and 1,327,104 in total.",
     "q3": "With the head: 1,328,642 / 125,768,450 = 1.06%. The old out_head had about 38.6 "
           "million weights and is replaced by a 2-class layer, so the total shrinks. I measured "
           "an initial loss of 0.7 against ln 2 = 0.693.",
     "q4": "Loss drops from 0.7 to below 0.1 in the first 60 batches, with spikes on batches "
           "full of spam. Accuracies: 92.3 train, 95.3 validation, 95.0 test; one epoch lasts "
           "around 45 s.",
     "q5": "Lower training accuracy is expected: it mixes the early untrained steps with the "
           "late ones, and dropout is active while it is computed.",
     "s1": "Si B vaut zéro le modèle démarre exactement comme le modèle pré-entraîné. Le "
           "facteur alpha sur rank règle l'amplitude de la correction.",
     "s2": "Garder l'objet d'origine évite de recopier 124 millions de paramètres et garantit "
           "qu'on utilise bien les poids pré-entraînés.",
     "s6": "Pour les deux exemples j'obtiens spam (0,97) et ham (0,99). Un SMS de livraison "
           "de colis avec un lien passe en ham : c'est une erreur.",
     "conclusion": "Peu de paramètres à entraîner, un fichier de poids LoRA minuscule ; en "
                   "revanche l'entraînement reste lent sur CPU à cause du passage avant "
                   "complet."},
    {"q1": "Comparing both printouts: every nn.Linear of the transformer blocks got wrapped, "
           "the rest of the architecture is untouched. Because the low-rank product starts at "
           "zero (B = 0) the wrapped layer returns exactly linear(x) at first.",
     "q2": f"{TRAINABLE_LINE}. Computation: rank 8 times the sum of input and output sizes of "
           "the 72 wrapped layers, i.e. 12 x 8 x (3*1536 + 1536 + 3840 + 3840) = 1,327,104.",
     "q3": "Trainable 1,328,642 out of 125,768,450 (1.06 %). The total decreases since the huge "
           "vocabulary projection was thrown away for a tiny 2-output linear layer. The first "
           "loss is 0.6931, which is log 2 to four digits thanks to the small head init.",
     "q4": "Batch losses fall fast then plateau near 0.05 with some noise (small batches of "
           "eight). Final accuracies 96% train (eval mode), 97% val, 96.3% test. An epoch took "
           "38 seconds with bf16.",
     "q5": "Here test is slightly above the running train accuracy; the running figure "
           "includes the beginning of the epoch when the classifier was still random.",
     "s1": "On initialise B à zéro pour que l'adaptation commence à zéro ; si A et B étaient "
           "nuls le gradient serait nul. alpha/rank normalise l'effet du rang.",
     "s2": "Une copie casserait le partage des poids : le modèle garderait deux versions des "
           "poids et la mémoire doublerait.",
     "s6": "Exemples : spam 0,995 et ham 0,990. J'ai essayé « Félicitations, vous avez "
           "gagné » "
           "(spam, 0,98) et un message en français sur un rendez-vous (ham, 0,62).",
     "conclusion": "Je retiens que LoRA coûte peu en mémoire et en calcul de gradient, mais "
                   "qu'un rang trop petit limite ce que le modèle peut apprendre."},
    {"q1": "The six linear maps of each block (query, key, value, out_proj, two MLP layers) are "
           "replaced by wrappers, while norms and embeddings stay. The outputs match before and "
           "after since lora(x) equals zero at initialisation.",
     "q2": f"Printed line: {TRAINABLE_LINE}. Hand count: for a Linear in->out LoRA adds "
           "8*in + 8*out, per block that is 110,592, and 12 blocks give 1,327,104.",
     "q3": "About 1.06% trainable: 1,328,642 of 125,768,450. Replacing the language model head "
           "(768 x 50257) by 768 x 2 removes most of its parameters. Initial loss measured 0.694, "
           "log(2) is 0.6931.",
     "q4": "The curve goes down steeply then flattens; it is jumpy because each batch only has "
           "8 messages. I got 93% (train), 95% (validation), 94.7% (test) in 80 seconds per epoch.",
     "q5": "The train number was averaged while learning and with dropout, so it underestimates "
           "the final model compared to the test accuracy.",
     "s1": "Avec B nul, la sortie initiale est celle du modèle gelé. Le rapport alpha sur le "
           "rang sert de taux d'apprentissage pour la branche.",
     "s2": "On veut modifier la couche d'origine, pas un double : sinon le gel des poids ne "
           "porterait pas sur le modèle utilisé.",
     "s6": "Spam avec 0,96 pour le premier, ham avec 0,97 pour le second. Erreur : « ok ça "
           "marche, rappelle moi » est classé spam.",
     "conclusion": "Moins de un pour cent des paramètres suffit pour atteindre 95 % ; la "
                   "limite est le temps d'une époque sur un processeur."},
    {"q1": "Before, the block shows plain Linear layers; after, they are LinearWithLoRA modules "
           "containing the original Linear. Structure otherwise identical. The LoRA output is "
           "multiplied through B which is zero so it contributes nothing yet.",
     "q2": f"{TRAINABLE_LINE}. For each of the 72 wrapped layers the LoRA matrices have "
           "rank x (fan_in + fan_out) entries; adding those up yields 1,327,104.",
     "q3": "1,328,642 trainable, 125,768,450 overall, 1.06 percent. The language modelling head "
           "is much bigger than a binary head, which is why the count went down. Measured loss "
           "at start: 0.69; ln(2) = 0.69.",
     "q4": "Smoothly decreasing per-epoch loss, noisy per-batch loss. Accuracies: training 95%, "
           "validation 95.9%, test 96%. Roughly one minute per epoch.",
     "q5": "Test comes out higher: the training accuracy was collected during training with "
           "dropout, from a model that was improving over the epoch.",
     "s1": "B commence à zéro, donc aucune perturbation du modèle au départ. alpha / rank "
           "évite de devoir changer le taux d'apprentissage quand le rang change.",
     "s2": "Parce que les poids gelés doivent rester ceux du modèle : une copie occuperait "
           "de la mémoire pour rien.",
     "s6": "Spam à 0,93 et ham à 0,99 pour les deux exemples, puis deux messages à moi, "
           "tous deux bien classés.",
     "conclusion": "LoRA : rapide à mettre en place, très économe ; il faut bien choisir les "
                   "couches où l'injecter."},
    {"q1": "In the second printout every Linear of attention and MLP sits inside a LoRA "
           "wrapper; the embeddings, layer norms and final head keep their type. Right after "
           "injecting, B = 0 makes the extra path vanish, so logits are unchanged.",
     "q2": f"{TRAINABLE_LINE}. I counted rank * (d_in + d_out) per wrapped layer: "
           "8 * (768 + 2304) + 8 * (768 + 768) + 8 * (768 + 3072) * 2 = 110,592 per block.",
     "q3": "Now 1,328,642 trainable parameters out of 125,768,450 (1.06%). The 38.6M-weight "
           "vocabulary head was removed and a 1,538-parameter head added. Starting loss 0.692 "
           "very close to log 2.",
     "q4": "Falls under 0.2 before the middle of epoch 1, then noisy around 0.05. Train 94.5%, "
           "val 96.6%, test 95.3%; 52 seconds per epoch.",
     "q5": "Training accuracy is lower because it is a running mean taken in train mode, "
           "while test accuracy is measured at the end, in eval mode.",
     "s1": "Zéro pour B : le modèle adapté est identique au modèle de base à "
           "l'initialisation. "
           "alpha divisé par le rang contrôle la force de la mise à jour.",
     "s2": "La même instance permet que le gel et le chargement des poids s'appliquent au vrai "
           "modèle, sans copie en mémoire.",
     "s6": "Résultats : spam 0,99, ham 0,99 ; mes essais : une promo de forfait (spam) et un "
           "message d'un ami (ham), corrects.",
     "conclusion": "Le coût d'entraînement baisse nettement ; la qualité reste très bonne "
                   "sur ce petit jeu de données déséquilibré."},
]
REPORT_ORDER = ("name", "number", "header", "s1", "s2", "q1", "q2", "q3", "q4", "q5", "s6",
                "s7", "conclusion")
_TODO = "*À compléter.*"


def release_notebooks(release_dir: Path = RELEASE_DIR) -> dict[str, nbformat.NotebookNode]:
    return {name: nbformat.read(release_dir / f"{name}.ipynb", as_version=4)
            for name in NOTEBOOK_NAMES}


def fill_notebooks(code: dict[str, str], answers: dict[str, str],
                   untouched: tuple[str, ...] = ()) -> dict[str, nbformat.NotebookNode]:
    """Release notebooks with these exercise cells and answers (by grade_id); the notebooks
    named in `untouched` stay as released."""
    notebooks = release_notebooks()
    for name, nb in notebooks.items():
        if name in untouched:
            continue
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            source = code.get(grade_id) if cell.cell_type == "code" else answers.get(grade_id)
            if source is not None and cell.metadata["nbgrader"].get("solution"):
                cell.source = source
    return notebooks


def report_text(sections: dict[str, str]) -> str:
    """rapport_template.md with each `*À compléter.*` replaced by the student's section
    (those missing are left as in the template)."""
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    pieces = re.split(r"(?<!`)" + re.escape(_TODO), text)  # not the one quoted in the intro
    assert len(pieces) == len(REPORT_ORDER) + 1, "the report template changed"
    out = [pieces[0]]
    for key, piece in zip(REPORT_ORDER, pieces[1:]):
        out += [sections.get(key, _TODO), piece]
    return "".join(out)


def write_student(folder: Path, notebooks: dict[str, nbformat.NotebookNode],
                  report: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, nb in notebooks.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    if report is not None:
        (folder / "rapport.md").write_text(report, encoding="utf-8")
    return folder


def implementation(variant: int) -> dict[str, str]:
    """Exercise cells of one style: implementation `variant` of every exercise."""
    return {grade_id: options[variant % len(options)]
            for grade_id, options in IMPLEMENTATIONS.items()}


def student_sections(index: int, name: str) -> dict[str, str]:
    header = (f"| python | torch | device |\n| --- | --- | --- |\n"
              f"| 3.11.{index + 2} | 2.13.0 | {'cpu' if index % 2 else 'cuda'} |")
    return {**ANSWERS[index], "name": name, "number": f"2024{index:04d}{len(name)}",
            "header": header}


class _Renamer(ast.NodeTransformer):
    """Renames the names a function assigns (its local variables), not its parameters."""

    def __init__(self, names: dict[str, str]):
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.names.get(node.id, node.id)
        return node


def _local_names(tree: ast.AST) -> set[str]:
    """Names assigned inside functions, other than parameters."""
    stored = {n.id for n in ast.walk(tree)
              if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    top_level = {t.id for stmt in getattr(tree, "body", []) if isinstance(stmt, ast.Assign)
                 for t in stmt.targets if isinstance(t, ast.Name)}
    parameters = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    return stored - top_level - parameters


def _reorder(body: list[ast.stmt]) -> list[ast.stmt]:
    """Functions in reverse order (a class's methods too), other statements where they were."""
    functions = [s for s in body if isinstance(s, ast.FunctionDef)]
    reordered = iter(reversed(functions))
    out = [next(reordered) if isinstance(s, ast.FunctionDef) else s for s in body]
    for stmt in out:
        if isinstance(stmt, ast.ClassDef):
            stmt.body = _reorder(stmt.body)
    return out


def disguise(source: str, seed: int = 0) -> str:
    """A copier's version of `source`: locals renamed, functions reordered, code reformatted
    (ast.unparse: comments gone, other quotes and spacing, blank lines, a comment of its own)."""
    tree = ast.parse(source)
    rng = random.Random(seed)
    names = {name: f"{rng.choice(['tmp', 'my', 'val', 'res'])}_{name}{rng.randint(1, 9)}"
             for name in sorted(_local_names(tree)) if name != "_"}
    tree = _Renamer(names).visit(tree)
    tree.body = _reorder(tree.body)
    code = ast.unparse(ast.fix_missing_locations(tree))
    code = re.sub(r"\n(\s*)(def |return )", r"\n\n\1\2", code)
    return "# my own solution\n" + code.replace(" = ", "  =  ")


def rewrap(text: str, width: int = 57) -> str:
    """The same text with other line breaks and spacing (a copy "apart from whitespace")."""
    return "\n\n".join("\n".join(textwrap.wrap(p, width)) if not p.startswith(("|", "#", ">", "!"))
                       else p for p in text.split("\n\n")).replace(". ", ".  ")


STUDENTS = ("alice", "bruno", "chloe", "david", "emma", "farid")  # implementation i each
COPIED_PAIR = ("chloe", "gaspard")  # gaspard hands in chloe's work, disguised
TEMPLATE_PAIR = ("david", "emma")  # both leave the same notebooks and the report as released
TEMPLATE_ONLY = ("05_training", "06_inference")


def write_class(root: Path) -> Path:
    """The test class in `root/<student>/`: six independent students, a disguised copy of one
    of them, and two who share only what they left of the release."""
    for index, name in enumerate(STUDENTS):
        sections = student_sections(index, name)
        shares_template = name in TEMPLATE_PAIR
        report = report_text({k: sections[k] for k in ("name", "number")} if shares_template
                             else sections)
        notebooks = fill_notebooks(implementation(index), sections,
                                   TEMPLATE_ONLY if shares_template else ())
        write_student(root / name, notebooks, report)
    original, copier = COPIED_PAIR
    index = STUDENTS.index(original)
    code = {grade_id: disguise(source, seed) for seed, (grade_id, source)
            in enumerate(implementation(index).items())}
    sections = {**{k: rewrap(v) for k, v in student_sections(index, original).items()},
                "name": copier, "number": "20249999"}
    write_student(root / copier, fill_notebooks(code, sections), rewrap(report_text(sections)))
    return root
