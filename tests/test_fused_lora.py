"""Fused LoRA training (helpers.fused_lora): the same function and gradients as the student's
layers, the student's parameters trained, everything put back afterwards. Tiny GPTs only."""

import pytest
import torch
from torch import nn

from autograder.solutions import (
    LinearWithLoRA,
    last_token_logits,
    lora_gpt_classifier,
    make_optimizer,
    train_step,
)
from helpers.fused_lora import FusedLoRALinear, fused_lora
from helpers.spam_data import SpamDataset, make_loader, spam_splits
from helpers.training import train_classifier

pytestmark = pytest.mark.usefixtures("single_thread")


def lora_gpt(cfg: dict, seed: int = 0) -> nn.Module:
    model = lora_gpt_classifier({**cfg, "context_length": 256}, rank=4, alpha=8, seed=seed)
    for name, param in model.named_parameters():
        if name.endswith("lora.B"):  # a trained-looking update, so that B matters
            nn.init.normal_(param, std=0.3)
    return model


def logits_and_grads(model: nn.Module, batch) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    logits = last_token_logits(model(batch[0]), batch[2])
    nn.functional.cross_entropy(logits, batch[1]).backward()
    return logits.detach(), {id(p): p.grad.clone() for p in model.parameters()
                             if p.grad is not None}


@pytest.fixture(scope="module")
def messages(sms_file):
    return SpamDataset(spam_splits(seed=123, path=sms_file).train.iloc[:48])


def test_fused_layers_compute_the_same_logits_and_gradients(tiny_cfg, messages):
    model = lora_gpt(tiny_cfg).train()
    batch = next(iter(make_loader(messages, batch_size=8)))
    reference, reference_grads = logits_and_grads(model, batch)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    wrappers = [m for m in model.modules() if isinstance(m, LinearWithLoRA)]
    calls = []
    for wrapper in wrappers:
        wrapper.register_forward_hook(lambda *args: calls.append(1))
    with fused_lora(model) as fused:
        assert fused.count == len(wrappers) == 12 and not fused.skipped
        assert sum(isinstance(m, FusedLoRALinear) for m in model.modules()) == 12
        calls.clear()  # the check on entering ran each wrapper once
        logits, grads = logits_and_grads(model, batch)
    assert not calls  # the fused path ran, not the wrappers' forward
    assert set(grads) == set(reference_grads)  # the same (student's) parameters get gradients
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=0)
    for key, grad in reference_grads.items():
        torch.testing.assert_close(grads[key], grad, atol=1e-5, rtol=1e-4)
    assert [m for m in model.modules() if isinstance(m, LinearWithLoRA)] == wrappers
    for name, param in model.named_parameters():  # put back bit for bit, float32
        assert param.dtype == torch.float32 and torch.equal(param, weights[name]), name


def test_fused_bf16_training_follows_the_students_layers(tiny_cfg, messages):
    loader = make_loader(messages, batch_size=8)
    histories = {}
    for fuse in (False, True):
        model = lora_gpt(tiny_cfg, seed=3)
        histories[fuse] = train_classifier(
            model, loader, loader, make_optimizer(model, lr=3e-3, weight_decay=0.0),
            num_epochs=2, seed=3, step_fn=train_step, logits_fn=last_token_logits,
            device="cpu", progress=False, precision="bf16", fuse_lora=fuse)
        assert all(isinstance(m, LinearWithLoRA) for m in model.modules()
                   if type(m).__name__.endswith("LoRA"))
    plain, fused = histories[False], histories[True]
    assert plain.settings["lora"] == "your LinearWithLoRA layers"
    assert fused.settings["lora"] == "fused (12 layers, helpers.fused_lora)"
    assert plain.batch_loss != fused.batch_loss  # two computations, rounded differently
    for a, b in zip(plain.batch_loss, fused.batch_loss):
        assert b == pytest.approx(a, abs=0.05)
    assert fused.train_loss[-1] == pytest.approx(plain.train_loss[-1], abs=0.03)


def test_a_layer_that_computes_something_else_is_left_as_written(tiny_cfg):
    class DoubledLoRA(LinearWithLoRA):  # same attributes, another formula
        def forward(self, x):
            return self.linear(x) + 2 * self.lora(x)

    model = nn.Sequential(LinearWithLoRA(nn.Linear(6, 6), 2, 4), nn.ReLU(),
                          DoubledLoRA(nn.Linear(6, 6), 2, 4))
    for module in (model[0], model[2]):
        module.linear.requires_grad_(False)
        nn.init.normal_(module.lora.B)
    x = torch.randn(3, 6)
    expected = model(x)
    with fused_lora(model) as fused:
        assert fused.count == 1 and isinstance(model[0], FusedLoRALinear)
        assert isinstance(model[2], DoubledLoRA) and list(fused.skipped) == ["2"]
        assert "left as written" in fused.describe()
        torch.testing.assert_close(model(x), expected)
    assert isinstance(model[0], LinearWithLoRA)
