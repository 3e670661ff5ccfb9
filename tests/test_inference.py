import pytest
import torch

from autograder import solutions
from autograder.solutions import add_classification_head, last_token_logits
from helpers.gpt import GPTModel
from helpers.inference import LABELS, classify_texts
from helpers.tokenizer import gpt2_tokenizer

TEXTS = [
    "You are a winner! Claim your free prize now by calling 0800 123 456.",
    "Hey, are we still meeting for lunch tomorrow?",
    "URGENT: your account has been selected. Reply YES to receive cash.",
    "ok",
]


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


@pytest.fixture
def model(tiny_cfg):
    torch.manual_seed(1)  # a seed whose random model answers both ham and spam
    model = add_classification_head(GPTModel(tiny_cfg))
    torch.nn.init.normal_(model.out_head.weight, std=0.5)  # confident, varied answers
    return model


def test_labels_and_probabilities(model, tokenizer):
    results = classify_texts(TEXTS, model, tokenizer, "cpu", 64, last_token_logits)
    assert len(results) == len(TEXTS)
    for label, probability in results:
        assert label in LABELS and isinstance(probability, float)
        assert 0.5 < probability <= 1.0
    assert {label for label, _ in results} == set(LABELS)  # the test is not trivially one-sided


def test_batch_equals_one_at_a_time_and_keeps_order(model, tokenizer):
    batch = classify_texts(TEXTS, model, tokenizer, None, None, last_token_logits, batch_size=3)
    singles = [classify_texts([t], model, tokenizer, None, None, last_token_logits)[0]
               for t in TEXTS]
    reversed_batch = classify_texts(TEXTS[::-1], model, tokenizer, None, None, last_token_logits)
    for (label, prob), (label1, prob1), (label2, prob2) in zip(batch, singles,
                                                                reversed_batch[::-1]):
        assert label == label1 == label2
        assert prob == pytest.approx(prob1, abs=1e-5) and prob == pytest.approx(prob2, abs=1e-5)


def test_long_text_is_truncated_to_its_first_tokens(model, tokenizer):
    long_text = "Free entry in a weekly competition to win cash! " * 200
    ids = tokenizer.encode(long_text)
    assert len(ids) > model.cfg["context_length"]
    (label, prob), = classify_texts([long_text], model, tokenizer, "cpu", 20, last_token_logits)
    with torch.no_grad():
        probs = torch.softmax(model.eval()(torch.tensor([ids[:20]]))[0, -1], dim=-1)
    assert label == LABELS[int(probs.argmax())] and prob == pytest.approx(probs.max().item())
    # without max_length, the model's context length is the limit
    assert classify_texts([long_text], model, tokenizer, "cpu", None, last_token_logits)


@pytest.mark.parametrize("bad", ["", "   \n\t"])
def test_empty_text_is_a_clear_error(model, tokenizer, bad):
    with pytest.raises(ValueError, match=r"Text #1 is empty"):
        classify_texts(["hello", bad], model, tokenizer, "cpu", 64, last_token_logits)


def test_a_single_string_is_refused_and_mode_is_restored(model, tokenizer):
    with pytest.raises(TypeError, match=r"\[text\]"):
        classify_texts("hello", model, tokenizer, "cpu", 64, last_token_logits)
    model.train()
    classify_texts(["hello"], model, tokenizer, "cpu", 64, last_token_logits)
    assert model.training


def test_agrees_with_the_reference_single_message_classifier(model, tokenizer):
    classify_text = getattr(solutions, "classify_text", None)
    if classify_text is None:
        pytest.skip("autograder.solutions has no classify_text yet")
    batch = classify_texts(TEXTS, model, tokenizer, "cpu", 64, last_token_logits)
    for text, (label, probability) in zip(TEXTS, batch):
        single_label, single_probability = classify_text(text, model, tokenizer, "cpu", 64)
        assert single_label == label
        assert single_probability == pytest.approx(probability, abs=1e-5)
