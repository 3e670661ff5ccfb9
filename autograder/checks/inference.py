"""Hidden checks of notebook 06: `classify_text`."""

from __future__ import annotations

import math

from torch import nn

from autograder import solutions
from autograder.checks.delegation import own_classify_text
from helpers.inference import LABELS, classify_texts

MESSAGES = [
    "You are a winner you have been specially selected to receive $1000 cash or a $2000 award.",
    "Hey, just wanted to check if we're still on for dinner tonight? Let me know!",
    "URGENT! Your mobile number has won a 2,000 prize. Call 09061701461 to claim.",
    "ok",
]


def _call(classify_text, text, model, tokenizer, device, max_length):
    result = classify_text(text, model, tokenizer, device, max_length)
    assert isinstance(result, tuple) and len(result) == 2, (
        "classify_text must return a tuple (label, probability)."
    )
    label, probability = result
    assert label in LABELS, f"The label must be 'ham' or 'spam', got {label!r}."
    return label, float(probability)


def same_as_batch(classify_text, model: nn.Module, tokenizer, max_length: int) -> None:
    """One message at a time gives what the pack's batch classifier gives."""
    own_classify_text(classify_text)
    device = next(model.parameters()).device
    expected = classify_texts(MESSAGES, model, tokenizer, device, max_length,
                              solutions.last_token_logits)
    for text, (label, probability) in zip(MESSAGES, expected):
        got = _call(classify_text, text, model, tokenizer, device, max_length)
        assert got[0] == label and math.isclose(got[1], probability, abs_tol=1e-4), (
            f"For {text[:40]!r}... you return {got}, the reference batch classifier "
            f"({label!r}, {probability:.4f}): read the class at the last real token and give "
            "the softmax probability of the predicted class."
        )


def probability_of_predicted_class(classify_text, model: nn.Module, tokenizer) -> None:
    """The probability is that of the predicted class: between 0.5 and 1 with two classes."""
    own_classify_text(classify_text)
    device = next(model.parameters()).device
    for text in MESSAGES:
        _, probability = _call(classify_text, text, model, tokenizer, device, 64)
        assert 0.5 <= probability <= 1.0, (
            f"With two classes the predicted class has probability in [0.5, 1], got {probability}: "
            "apply softmax to the two logits (probabilities sum to 1) and take the larger."
        )


def long_text_truncated(classify_text, model: nn.Module, tokenizer, max_length: int) -> None:
    """A message longer than max_length tokens is cut to its first max_length tokens."""
    own_classify_text(classify_text)
    device = next(model.parameters()).device
    long_text = "win a free prize now " * 400  # ~2,000 tokens, beyond GPT-2's 1,024 context
    label, probability = _call(classify_text, long_text, model, tokenizer, device, max_length)
    first = tokenizer.decode(tokenizer.encode(long_text)[:max_length])
    expected = classify_texts([first], model, tokenizer, device, max_length,
                              solutions.last_token_logits)[0]
    assert label == expected[0] and math.isclose(probability, expected[1], abs_tol=1e-4), (
        "A long message must be classified on its first max_length tokens."
    )


def empty_text_is_an_error(classify_text, model: nn.Module, tokenizer) -> None:
    """'' and '   ' raise ValueError (a clear message, not an IndexError deep inside)."""
    own_classify_text(classify_text)
    device = next(model.parameters()).device
    for text in ("", "   "):
        try:
            classify_text(text, model, tokenizer, device, 64)
        except ValueError:
            continue
        except Exception as exc:  # noqa: BLE001 - any other error is the wrong kind
            raise AssertionError(
                f"classify_text({text!r}) raised {type(exc).__name__}; raise a ValueError that "
                "says the text is empty."
            ) from None
        raise AssertionError(f"classify_text({text!r}) returned a result; raise ValueError instead.")
