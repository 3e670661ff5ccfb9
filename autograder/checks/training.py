"""Hidden checks of notebook 05: `make_optimizer`, `calc_accuracy`, `train_step`, and the first
two on a vision model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autograder import solutions
from autograder.checks.delegation import own_train_step
from helpers.gpt import GPTModel
from helpers.image_data import synthetic_images
from helpers.resnet import ResNet
from helpers.sanity import lr_finder, overfit_one_batch

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


def _small_resnet() -> nn.Module:
    torch.manual_seed(0)
    return ResNet(num_classes=10, blocks_per_stage=(1, 1, 1), widths=(8, 16, 32))


def works_on_a_resnet(make_optimizer, calc_accuracy) -> None:
    """On a small ResNet with 10 classes (every parameter trainable, batch norm): the optimizer
    overfits one batch and drives the LR finder's sweep; the accuracy counts 10 classes."""
    batch = synthetic_images(num_classes=10, per_class=2, image_size=16, seed=0)
    resnet = _small_resnet()
    try:
        optimizer = make_optimizer(resnet, lr=1e-2, weight_decay=0.0)
    except Exception as error:
        raise AssertionError(
            f"make_optimizer failed on a ResNet ({type(error).__name__}: {error}). Pick the "
            "parameters by requires_grad, not by their GPT-2 names: it must work for any model."
        ) from None
    report = overfit_one_batch(resnet, batch, optimizer=optimizer, steps=60, restore=False,
                               progress=False)
    assert report.ok, f"With your make_optimizer a ResNet cannot overfit one batch: {report.message}"
    images, labels = batch
    with torch.no_grad():
        logits = resnet.eval()(images)
    logits = torch.cat([logits, torch.eye(10)[[3, 7]] * 5])  # two rows with a clear answer
    labels = torch.cat([labels, torch.tensor([3, 1])])     # one right, one wrong
    expected = (logits.argmax(dim=-1) == labels).float().mean().item()
    value = float(calc_accuracy(logits, labels))
    assert abs(value - expected) < 1e-6, (
        f"On 22 rows of 10-class logits the accuracy is {expected:.4f}, calc_accuracy gave "
        f"{value:.4f}: take the argmax over all the classes, not only two."
    )
    sweep_model = _small_resnet()
    sweep = lr_finder(sweep_model, batch, optimizer=make_optimizer(sweep_model, lr=1e-7),
                      start_lr=1e-5, end_lr=1.0, num_steps=20, plot=False, progress=False)
    assert min(sweep.losses) < 0.9 * sweep.losses[0], (
        f"The LR finder's loss never fell with your optimizer (from {sweep.losses[0]:.3f}, "
        f"lowest {min(sweep.losses):.3f}): it must train every trainable parameter."
    )
