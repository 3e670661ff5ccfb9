import json
import math

import pytest
import torch
from torch import nn

from autograder.solutions import (
    last_token_logits,
    lora_gpt_classifier,
    make_optimizer,
    train_step,
)
from helpers.gpt import GPTModel
from helpers.modes import GRADING_MAX_BATCHES, GRADING_VAR
from helpers.spam_data import PAD_TOKEN_ID, SpamDataset, make_loader, spam_splits
from helpers.training import (
    History,
    calc_accuracy_loader,
    calc_loss_loader,
    evaluate,
    train_classifier,
)

DOT = 13  # GPT-2's token for "."


def small_classifier(tiny_cfg: dict, seed: int = 0) -> GPTModel:
    """A 2-layer GPT with LoRA (rank 8) and a 2-class head; context long enough for 256."""
    return lora_gpt_classifier({**tiny_cfg, "context_length": 256}, seed=seed)


@pytest.fixture(scope="module")
def splits(sms_file):
    return spam_splits(seed=123, path=sms_file)


@pytest.fixture(scope="module")
def few_messages(splits):
    """32 real training messages: 4 fixed batches of 8."""
    return SpamDataset(splits.train.iloc[:32])


class CountingLoader:
    """Wraps a loader and counts the batches taken from it."""

    def __init__(self, loader):
        self.loader, self.taken = loader, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.taken += 1
            yield batch


class MarkerModel(nn.Module):
    """Logits (batch, seq, 2) favouring spam at '.' tokens and, strongly, at padding."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids):
        spam = 4.0 * (input_ids == DOT).float() + 8.0 * (input_ids == PAD_TOKEN_ID).float()
        return torch.stack([torch.zeros_like(spam), spam], dim=-1)


def test_per_batch_padding_gives_the_same_logits_as_padding_to_256(tiny_cfg, splits):
    model = small_classifier(tiny_cfg)
    for module in model.modules():  # non-zero LoRA updates, so every path matters
        if hasattr(module, "B") and isinstance(module.B, nn.Parameter):
            nn.init.normal_(module.B, std=0.5)
    model.eval()
    dataset = SpamDataset(splits.validation)
    per_batch = make_loader(dataset, batch_size=8)
    fixed = make_loader(dataset, batch_size=8, pad_to=256)
    with torch.no_grad():
        for _, (short, padded) in zip(range(5), zip(per_batch, fixed)):
            assert short.input_ids.shape[1] < 256 == padded.input_ids.shape[1]
            a = last_token_logits(model(short.input_ids), short.last_idx)
            b = last_token_logits(model(padded.input_ids), padded.last_idx)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    loss_a, acc_a = evaluate(per_batch, model, last_token_logits, max_batches=5)
    loss_b, acc_b = evaluate(fixed, model, last_token_logits, max_batches=5)
    assert loss_a == pytest.approx(loss_b, abs=1e-5) and acc_a == acc_b


def test_training_on_real_messages_lowers_the_loss(tiny_cfg, few_messages):
    model = small_classifier(tiny_cfg, seed=1)
    loader = make_loader(few_messages, batch_size=8)
    optimizer = make_optimizer(model, lr=3e-3, weight_decay=0.0)
    history = train_classifier(model, loader, loader, optimizer, num_epochs=6, seed=1,
                               step_fn=train_step, logits_fn=last_token_logits,
                               device="cpu", progress=False)
    first, last = history.batch_loss[:4], history.batch_loss[-4:]
    assert sum(first) / 4 == pytest.approx(math.log(2), abs=0.1)
    assert sum(last) / 4 < 0.7 * sum(first) / 4
    assert history.train_loss[-1] < history.batch_loss[0]


def test_only_trainable_parameters_change(tiny_cfg, few_messages):
    model = small_classifier(tiny_cfg)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loader = make_loader(few_messages, batch_size=8)
    train_classifier(model, loader, loader, make_optimizer(model, lr=1e-3), num_epochs=1,
                     step_fn=train_step, logits_fn=last_token_logits, progress=False)
    for name, param in model.named_parameters():
        changed = not torch.equal(before[name], param.detach())
        assert changed == param.requires_grad, name
    assert any(name.endswith("lora.B") and p.requires_grad for name, p in model.named_parameters())


def test_history_content(tiny_cfg, few_messages, splits, tmp_path):
    model = small_classifier(tiny_cfg)
    train = make_loader(few_messages, batch_size=8, shuffle=True)
    val = make_loader(SpamDataset(splits.validation.iloc[:20]), batch_size=8)
    history = train_classifier(model, train, val, make_optimizer(model), num_epochs=2,
                               step_fn=train_step, logits_fn=last_token_logits,
                               eval_every=3, eval_batches=2, progress=True)
    assert len(history.batch_loss) == 8
    assert history.examples_seen == [8, 16, 24, 32, 40, 48, 56, 64]
    assert history.epoch_examples_seen == [32, 64] and history.examples_per_epoch == 32
    assert history.eval_examples_seen == [24, 48]
    assert len(history.eval_train_loss) == len(history.eval_val_loss) == 2
    for series in (history.train_loss, history.val_loss, history.train_acc, history.val_acc,
                   history.epoch_seconds):
        assert len(series) == 2 and all(value >= 0 for value in series)
    assert all(0 <= acc <= 1 for acc in history.train_acc + history.val_acc)
    saved = json.loads(history.save_json(tmp_path / "history.json").read_text())
    assert History.from_dict(saved) == history


def test_grading_mode_caps_training_and_evaluation(tiny_cfg, splits, monkeypatch):
    monkeypatch.setenv(GRADING_VAR, "1")
    model = small_classifier(tiny_cfg)
    train = CountingLoader(make_loader(SpamDataset(splits.train), batch_size=8, shuffle=True))
    val = CountingLoader(make_loader(SpamDataset(splits.validation), batch_size=8))
    history = train_classifier(model, train, val, make_optimizer(model), num_epochs=2,
                               step_fn=train_step, logits_fn=last_token_logits, progress=False)
    assert len(history.batch_loss) == 2 * GRADING_MAX_BATCHES
    assert train.taken == 2 * 2 * GRADING_MAX_BATCHES  # training + end-of-epoch evaluation
    assert val.taken == 2 * GRADING_MAX_BATCHES
    assert history.epoch_examples_seen == [8 * GRADING_MAX_BATCHES, 16 * GRADING_MAX_BATCHES]


def test_evaluation_reads_the_last_real_token_in_eval_mode_without_gradients(few_messages):
    loader = make_loader(few_messages, batch_size=8)
    model = MarkerModel().train()
    last_logits, labels = [], []
    for batch in loader:
        last_tokens = batch.input_ids[torch.arange(len(batch.labels)), batch.last_idx]
        last_logits.append(model(last_tokens[:, None])[:, 0])
        labels.append(batch.labels)
    last_logits, labels = torch.cat(last_logits), torch.cat(labels)
    predictions = last_logits.argmax(dim=-1)
    assert 0 < predictions.sum() < len(predictions)  # both classes predicted, no padding read
    seen_grad = []

    def spy_logits(logits, last_idx):
        seen_grad.append(torch.is_grad_enabled() or model.training)
        return last_token_logits(logits, last_idx)

    loss, accuracy = evaluate(loader, model, spy_logits)
    assert accuracy == pytest.approx((predictions == labels).float().mean().item())
    assert loss == pytest.approx(nn.functional.cross_entropy(last_logits, labels).item())
    assert calc_accuracy_loader(loader, model, spy_logits) == accuracy
    assert calc_loss_loader(loader, model, spy_logits) == loss
    assert model.training and not any(seen_grad)
    model.eval()
    evaluate(loader, model, spy_logits, max_batches=1)
    assert not model.training


def test_step_fn_gets_batches_on_the_device(tiny_cfg, few_messages):
    model = small_classifier(tiny_cfg)
    received = []

    def spy_step(model, batch, optimizer):
        received.append(batch)
        return train_step(model, batch, optimizer)

    loader = make_loader(few_messages, batch_size=8)
    train_classifier(model, loader, loader, make_optimizer(model), num_epochs=1, max_batches=2,
                     step_fn=spy_step, logits_fn=last_token_logits, device="cpu", progress=False)
    assert len(received) == 2
    input_ids, labels, last_idx = received[0]
    assert all(t.device.type == "cpu" for t in (input_ids, labels, last_idx))
    assert model.training


def test_student_mistakes_get_clear_errors(tiny_cfg, few_messages):
    model = small_classifier(tiny_cfg)
    loader = make_loader(few_messages, batch_size=8)
    with pytest.raises(ValueError, match="last real token"):
        evaluate(loader, model, lambda logits, last_idx: logits)
    with pytest.raises(TypeError, match=r"loss.item\(\)"):
        train_classifier(model, loader, loader, make_optimizer(model), num_epochs=1,
                         step_fn=lambda m, b, o: None, logits_fn=last_token_logits,
                         progress=False)


def test_mode_comes_back_even_when_the_block_raises(tiny_cfg, few_messages):
    from helpers.model_mode import model_mode

    model = small_classifier(tiny_cfg).train()
    with pytest.raises(RuntimeError), model_mode(model, False):
        assert not model.training
        raise RuntimeError("interrupted")
    assert model.training

    def wrong_shape(logits, last_idx):  # forgot to pick the last real token
        return logits

    loader = make_loader(few_messages, batch_size=8)
    with pytest.raises(ValueError, match=r"\(batch, num_classes\) = \(8, C\)"):
        evaluate(loader, model, wrong_shape)
    assert model.training
