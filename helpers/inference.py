"""Classifying many messages at once with a fine-tuned spam classifier.

`classify_texts` is the batch counterpart of the lab's `classify_text` (notebook 06): one
message at a time or many in a batch give the same answers, because padding is on the right
and attention is causal. `logits_fn` is the student's last-token selection (notebook 04).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from helpers.class_logits import check_class_logits
from helpers.devices import model_device
from helpers.model_mode import model_mode
from helpers.spam_data import collate_spam

LABELS = ("ham", "spam")  # class 0, class 1


def _encode(texts: Sequence[str], tokenizer, max_length: int) -> list[list[int]]:
    encoded = []
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"Text #{position} is a {type(text).__name__}, not a str.")
        if not text.strip():
            raise ValueError(f"Text #{position} is empty: give a non-empty message to classify.")
        encoded.append(tokenizer.encode(text)[:max_length])
    return encoded


def classify_texts(texts: Sequence[str], model: nn.Module, tokenizer,
                   device: torch.device | str | None, max_length: int | None,
                   logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                   batch_size: int = 32) -> list[tuple[str, float]]:
    """('ham' or 'spam', its probability) for every text, in the order given.

    Texts longer than `max_length` tokens (None: the model's context length, also the upper
    bound) keep their first `max_length` tokens. Each batch is right-padded with id 50256 to
    its longest text; the class is read at each text's last real token. `device` None: the
    model's device. Runs in eval mode without gradients, then restores the model's mode.
    """
    if isinstance(texts, str):
        raise TypeError("classify_texts takes a list of texts; for one text pass [text].")
    context_length = model.pos_emb.weight.shape[0]
    max_length = context_length if max_length is None else min(max_length, context_length)
    encoded = _encode(texts, tokenizer, max_length)
    device = torch.device(device) if device is not None else model_device(model)
    results = []
    with model_mode(model, False), torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            chunk = [(ids, 0) for ids in encoded[start:start + batch_size]]
            input_ids, _, last_idx = collate_spam(chunk).to(device)
            logits = logits_fn(model(input_ids), last_idx)
            check_class_logits(logits, len(chunk), num_classes=len(LABELS))
            probs, classes = torch.softmax(logits.float(), dim=-1).max(dim=-1)
            results += [(LABELS[c], p) for c, p in zip(classes.tolist(), probs.tolist())]
    return results
