"""Hidden checks of notebook 04: the classification head and `last_token_logits`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from autograder import solutions
from helpers.devices import batch_to_device, model_device
from helpers.diagnose import head_mistake, last_token_mistake
from helpers.gpt import GPTModel, gpt_config
from helpers.model_mode import model_mode
from helpers.params import count_parameters
from helpers.tokenizer import END_OF_TEXT_ID

HEAD_PARAMS = 768 * 2 + 2
TRAINABLE_WITH_HEAD = 1_327_104 + HEAD_PARAMS  # 1,328,642
ALL_WITH_HEAD = 164_364_288 - 50_257 * 768 + HEAD_PARAMS  # 125,768,450


def _apply(fn, model, *args):
    result = fn(model, *args)
    return result if isinstance(result, nn.Module) else model


def gpt2_with_head(add_classification_head) -> None:
    """On GPT-2 small with reference LoRA (rank 8): exact counts, a trainable 2-class head.

    Built on the meta device: only counts and shapes are checked.
    """
    with torch.device("meta"):
        model = GPTModel(gpt_config("124M"))
        solutions.replace_linear_with_lora(model, 8, 16)
        solutions.freeze_and_activate_lora(model)
        model = _apply(add_classification_head, model, 2)
    mistake = head_mistake(model)
    assert mistake is None, mistake
    head = model.out_head
    assert isinstance(head, nn.Linear), "out_head must be an nn.Linear."
    assert (head.in_features, head.out_features) == (768, 2), (
        f"out_head maps {head.in_features} -> {head.out_features}; it must map the 768 features "
        "to the 2 classes."
    )
    assert head.bias is not None, "Give the new head a bias (nn.Linear's default)."
    assert all(p.requires_grad for p in head.parameters()), "The new head must be trainable."
    assert count_parameters(model) == (TRAINABLE_WITH_HEAD, ALL_WITH_HEAD), (
        f"trainable/all parameters are {count_parameters(model)} after the head; check that "
        "only LoRA and the new head are trainable and that the old head is gone."
    )


def _small_model_with_head(add_classification_head, num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Module()
    model.out_head = nn.Linear(64, 10)
    return _apply(add_classification_head, model, num_classes)


def head_for_any_number_of_classes(add_classification_head) -> None:
    """num_classes sets the head's size (200 and 3 classes on 64 features)."""
    for num_classes in (200, 3):
        head = _small_model_with_head(add_classification_head, num_classes).out_head
        assert (head.in_features, head.out_features) == (64, num_classes), (
            f"Asked for {num_classes} classes on 64 features, the head maps {head.in_features} "
            f"-> {head.out_features}: use model.out_head.in_features and num_classes."
        )


def head_starts_near_uniform(add_classification_head) -> None:
    """A 200-class head on a model with large features starts near log(200)."""
    model = _small_model_with_head(add_classification_head, 200)
    features = 20 * torch.randn(256, 64)  # pretrained features are large, like GPT-2's
    loss = F.cross_entropy(model.out_head(features), torch.randint(0, 200, (256,))).item()
    assert abs(loss - math.log(200)) < 0.1 * math.log(200), (
        f"A fresh 200-class head gives an initial loss of {loss:.2f}, far from log(200) = "
        f"{math.log(200):.2f}: initialise the head so that its logits start near zero."
    )


def last_token_rows(last_token_logits) -> None:
    """Picks row b, position last_idx[b] of (batch, seq, C) logits, for any batch size."""
    logits = torch.arange(3 * 5 * 2, dtype=torch.float32).reshape(3, 5, 2)
    last_idx = torch.tensor([4, 0, 2])
    out = last_token_logits(logits, last_idx)
    expected = torch.stack([logits[0, 4], logits[1, 0], logits[2, 2]])
    assert tuple(out.shape) == (3, 2), f"Output shape {tuple(out.shape)}; expected (batch, C) = (3, 2)."
    assert torch.equal(out, expected), last_token_mistake(last_token_logits) or (
        "The rows returned are not those at each sequence's last real token (last_idx)."
    )
    single = last_token_logits(logits[:1], torch.tensor([1]))
    assert torch.equal(single, logits[0, 1:2]), "A batch of one message must work too."


def padding_invariance(model: nn.Module, last_token_logits, tokenizer) -> None:
    """The class logits of a message do not depend on how much padding follows it."""
    ids = tokenizer.encode("Free entry in a weekly competition to win FA Cup final tickets")
    short = torch.tensor([ids])
    padded = torch.tensor([ids + [END_OF_TEXT_ID] * 20])
    last = torch.tensor([len(ids) - 1])
    device = model_device(model)
    with model_mode(model, False), torch.no_grad():
        a = last_token_logits(model(short.to(device)), last.to(device))
        b = last_token_logits(model(padded.to(device)), last.to(device))
    assert torch.allclose(a, b, atol=1e-4), last_token_mistake(last_token_logits) or (
        "Adding padding after a message changed its class logits: take the logits at the last "
        "real token, not at the last position."
    )


def initial_loss(model: nn.Module, last_token_logits, batch) -> None:
    """Before training the loss on a batch is within 0.05 of log(2)."""
    input_ids, labels, last_idx = batch_to_device(batch, model_device(model))
    with model_mode(model, False), torch.no_grad():
        loss = F.cross_entropy(last_token_logits(model(input_ids), last_idx), labels).item()
    assert abs(loss - math.log(2)) < 0.05, (
        f"The initial loss is {loss:.3f}, not close to log(2) = {math.log(2):.3f}: the new "
        "head's logits should start near zero (see the head initialisation section)."
    )
