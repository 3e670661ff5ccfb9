"""Hidden checks of notebook 05: `make_optimizer`, `calc_accuracy`, `train_step`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autograder import solutions
from autograder.checks.delegation import own_train_step
from helpers.gpt import GPTModel
from helpers.sanity import overfit_one_batch

TINY = {"vocab_size": 50257, "context_length": 32, "emb_dim": 32, "n_heads": 4,
        "n_layers": 2, "drop_rate": 0.0, "qkv_bias": True}


def _tiny_classifier(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = GPTModel(TINY)
    solutions.replace_linear_with_lora(model, 4, 8)
    solutions.freeze_and_activate_lora(model)
    return solutions.add_classification_head(model, 2)


def _batch(seed: int = 0, size: int = 4, length: int = 12):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, 50257, (size, length), generator=generator)
    last_idx = torch.randint(length // 2, length, (size,), generator=generator)
    labels = torch.arange(size) % 2
    return input_ids, labels, last_idx


def accuracy_on_known_logits(calc_accuracy) -> None:
    """3 right out of 4 is 0.75, returned as a Python number."""
    logits = torch.tensor([[2.0, 1.0], [0.1, 0.9], [3.0, -1.0], [0.0, 5.0]])
    labels = torch.tensor([0, 1, 1, 1])
    value = calc_accuracy(logits, labels)
    assert isinstance(value, (float, int)) or (torch.is_tensor(value) and value.numel() == 1), (
        "calc_accuracy must return one number (use .item())."
    )
    assert abs(float(value) - 0.75) < 1e-6, f"3 of these 4 predictions are right; got {float(value)}."
    assert abs(float(calc_accuracy(logits[:2], labels[:2])) - 1.0) < 1e-6, "Two right of two is 1.0."


def optimizer_over_trainable_only(make_optimizer) -> None:
    """AdamW holding exactly the trainable parameters, with the given lr and weight decay."""
    model = _tiny_classifier()
    optimizer = make_optimizer(model, lr=1e-3, weight_decay=0.05)
    assert isinstance(optimizer, torch.optim.AdamW), "Use torch.optim.AdamW."
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert held == trainable, (
        f"The optimizer holds {len(held)} tensors; it should hold exactly the {len(trainable)} "
        "trainable ones (filter on requires_grad)."
    )
    group = optimizer.param_groups[0]
    assert group["lr"] == 1e-3 and group["weight_decay"] == 0.05, "Pass lr and weight_decay to AdamW."


def step_moves_only_lora_and_head(train_step) -> None:
    """After two steps the frozen weights are bit-identical, the head and LoRA's B moved."""
    own_train_step(train_step)
    model = _tiny_classifier()
    frozen_before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    head_before = model.out_head.weight.detach().clone()
    optimizer = solutions.make_optimizer(model, lr=1e-2, weight_decay=0.0)
    for _ in range(2):  # B starts at zero: A only moves from the second step on
        loss = train_step(model, _batch(), optimizer)
    assert isinstance(loss, (float, int)), "train_step must return the loss as a float (loss.item())."
    changed = [n for n, p in model.named_parameters() if not p.requires_grad
               and not torch.equal(p, frozen_before[n])]
    assert not changed, f"Frozen weights changed during training: {changed[:3]}."
    assert not torch.equal(model.out_head.weight, head_before), (
        "The head's weights did not change in two steps: the optimizer step must update the "
        "new head too (it is trainable, and the loss goes through it)."
    )
    lora_b = [p for n, p in model.named_parameters() if n.endswith("lora.B")]
    assert any(torch.count_nonzero(b) for b in lora_b), "LoRA's B did not move after two steps."


def step_loss_is_the_batch_loss(train_step) -> None:
    """The returned loss is the cross-entropy at the last real tokens before the update."""
    own_train_step(train_step)
    model = _tiny_classifier(seed=1)
    input_ids, labels, last_idx = _batch(seed=1)
    with torch.no_grad():
        logits = solutions.last_token_logits(model(input_ids), last_idx)
        expected = F.cross_entropy(logits, labels).item()
    loss = train_step(model, (input_ids, labels, last_idx), solutions.make_optimizer(model, lr=1e-3))
    assert abs(float(loss) - expected) < 1e-4, (
        f"train_step returned {float(loss):.4f}; the cross-entropy of the batch at the last real "
        f"tokens is {expected:.4f}. Use last_token_logits and compute the loss before the step."
    )


def overfits_one_batch(train_step) -> None:
    """Repeating steps on one batch drives its loss down."""
    own_train_step(train_step)
    model = _tiny_classifier(seed=2)
    optimizer = solutions.make_optimizer(model, lr=1e-2, weight_decay=0.0)
    losses = overfit_one_batch(model, _batch(seed=2, size=8), step_fn=train_step,
                               optimizer=optimizer, steps=30, target_loss=0.0, restore=False,
                               progress=False).losses
    assert losses[-1] < 0.5 * losses[0], (
        f"After 30 steps on the same batch the loss went from {losses[0]:.3f} to {losses[-1]:.3f}; "
        "it should fall well below half. Check zero_grad, backward and step, in that order."
    )
