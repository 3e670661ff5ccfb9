"""Speed features: length bucketing, mixed precision, frozen-weight casting, merged inference.

Tiny GPT configurations only: the whole file runs in well under a minute on 2 CPU cores.
"""

import math

import pytest
import torch
from torch import nn

from autograder.solutions import (
    LinearWithLoRA,
    last_token_logits,
    lora_gpt_classifier,
    make_optimizer,
    replace_linear_with_lora,
    train_step,
)
from helpers import devices
from helpers.gpt import GPTModel
from helpers.lora_merge import count_lora_wrappers, lora_update, merge_lora, merged_lora
from helpers.precision import Precision, autocast_forward, frozen_weights_in, resolve_precision
from helpers.spam_data import (
    SpamBatch,
    SpamDataset,
    describe_batching,
    make_loader,
    spam_loaders,
    spam_splits,
)
from helpers.training import evaluate, train_classifier

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: see conftest

# bf16 keeps 8 bits of mantissa: class logits of these small models (|logit| < ~3) come out
# within a few hundredths of float32's.
BF16_LOGIT_ATOL = 0.05
BF16_LOSS_ATOL = 0.02


def lora_gpt(cfg: dict, seed: int = 0, nonzero_b: bool = True, head: bool = True) -> GPTModel:
    model = lora_gpt_classifier({**cfg, "context_length": 256}, rank=4, alpha=8,
                                num_classes=2 if head else None, seed=seed)
    if nonzero_b:  # a trained-looking LoRA update, so that merging has something to fold
        for name, param in model.named_parameters():
            if name.endswith("lora.B"):
                nn.init.normal_(param, std=0.3)
    return model


@pytest.fixture(scope="module")
def splits(sms_file):
    return spam_splits(seed=123, path=sms_file)


@pytest.fixture(scope="module")
def messages(splits):
    return SpamDataset(splits.train.iloc[:48])


def class_logits(model, batches):
    with torch.no_grad():
        return torch.cat([last_token_logits(model(b.input_ids), b.last_idx) for b in batches])


# --- bucketing -------------------------------------------------------------------------------

def test_bucketed_loader_gives_every_message_once_per_epoch_with_less_padding(sms_file):
    plain, bucketed = (spam_loaders(batch_size=8, seed=7, path=sms_file, bucket=b).train
                       for b in (False, True))
    assert describe_batching(bucketed)["order"] == "length-bucketed, shuffled"
    assert describe_batching(plain)["text"] == "batches of 8, shuffled, padded per batch"
    dataset = bucketed.dataset
    epochs = []
    for _ in range(2):
        seen = []
        for batch in bucketed:
            for row, last in enumerate(batch.last_idx.tolist()):
                seen.append(tuple(batch.input_ids[row, :last + 1].tolist()))
        assert sorted(seen) == sorted(tuple(ids) for ids in dataset.encoded_texts)
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # a new order of batches every epoch
    padded = {name: sum(b.input_ids.numel() for b in loader)
              for name, loader in (("plain", plain), ("bucketed", bucketed))}
    real = sum(dataset.lengths())
    assert padded["bucketed"] < 1.05 * real < padded["plain"]


def test_default_batches_are_short_and_mixed_in_class(sms_file):
    loaders = {bucket: spam_loaders(batch_size=8, seed=7, path=sms_file, bucket=bucket).train
               for bucket in (False, True, "mixed")}
    mixed = loaders["mixed"]
    assert spam_loaders(path=sms_file).train.batch_sampler.__class__ is type(mixed.batch_sampler)
    assert describe_batching(mixed)["order"] == ("length-grouped with both classes in each "
                                                 "batch, shuffled")
    labels = torch.tensor(mixed.dataset.labels)
    epochs = [list(mixed.batch_sampler) for _ in range(2)]
    for batches in epochs:
        assert sorted(i for batch in batches for i in batch) == list(range(len(labels)))
        full = [batch for batch in batches if len(batch) == 8]
        assert len(full) == len(batches) - 1
        assert all(3 <= int(labels[batch].sum()) <= 5 for batch in full)  # 4 ham, 4 spam
    assert epochs[0] != epochs[1]
    padded = {name: sum(b.input_ids.numel() for b in loader) for name, loader in loaders.items()}
    assert padded[True] < padded["mixed"] < 0.85 * padded[False]
    again = spam_loaders(batch_size=8, seed=7, path=sms_file).train
    assert list(again.batch_sampler) == epochs[0]
    with pytest.raises(ValueError, match="bucket='sorted'"):
        make_loader(mixed.dataset, bucket="sorted")


def test_bucketed_and_fixed_padding_give_the_same_batches(sms_file):
    short, fixed = (spam_loaders(path=sms_file, bucket=True, pad_to=p).train for p in (None, 256))
    assert describe_batching(fixed)["padding"] == "to 256"
    for a, b in zip(short, fixed):
        assert torch.equal(a.labels, b.labels) and torch.equal(a.last_idx, b.last_idx)
        assert torch.equal(b.input_ids[:, :a.input_ids.shape[1]], a.input_ids)


# --- merged inference ------------------------------------------------------------------------

def test_merged_logits_equal_unmerged_and_undo_restores_everything(tiny_cfg, messages):
    model = lora_gpt(tiny_cfg).eval()
    batches = list(make_loader(messages, batch_size=8))
    reference = class_logits(model, batches)
    wrappers = {name: module for name, module in model.named_modules()
                if isinstance(module, LinearWithLoRA)}
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert count_lora_wrappers(model) == len(wrappers) == 12

    handle = merge_lora(model)
    assert handle.count == 12 and count_lora_wrappers(model) == 0
    assert not any(isinstance(m, LinearWithLoRA) for m in model.modules())  # branch skipped
    assert isinstance(model.trf_blocks[0].att.W_query, nn.Linear)
    merged = class_logits(model, batches)
    assert (merged - reference).abs().max().item() < 1e-4
    assert handle.max_error < 1e-5

    handle.undo()
    assert {name: m for name, m in model.named_modules()
            if isinstance(m, LinearWithLoRA)} == wrappers  # the same objects, in place
    for name, param in model.named_parameters():
        assert torch.equal(param, weights[name]), name
    assert torch.equal(class_logits(model, batches), reference)


def test_merged_lora_context_and_inexact_undo(tiny_cfg, messages):
    model = lora_gpt(tiny_cfg, seed=1).eval()
    batch = next(iter(make_loader(messages, batch_size=8)))
    reference = class_logits(model, [batch])
    before = model.trf_blocks[1].ff.layers[0].linear.weight.detach().clone()
    with merged_lora(model) as handle:
        assert handle.count == 12
        assert (class_logits(model, [batch]) - reference).abs().max().item() < 1e-4
    assert count_lora_wrappers(model) == 12 and not handle.active
    with merged_lora(model, exact_undo=False):
        pass
    after = model.trf_blocks[1].ff.layers[0].linear.weight
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)


def test_merge_handles_nested_wrappers_and_plain_models(tiny_cfg):
    torch.manual_seed(0)
    model = GPTModel({**tiny_cfg, "n_layers": 1})
    assert merge_lora(model).count == 0  # nothing to merge
    replace_linear_with_lora(model, rank=2, alpha=4)
    replace_linear_with_lora(model, rank=2, alpha=4)  # the cell run twice: nested wrappers
    for name, param in model.named_parameters():
        if name.endswith("lora.B"):
            nn.init.normal_(param, std=0.3)
    model.eval()
    ids = torch.randint(0, 1000, (2, 10))
    with torch.no_grad():
        reference = model(ids)
        with merged_lora(model) as handle:
            assert handle.count == 12
            merged = model(ids)
        assert (merged - reference).abs().max().item() < 1e-4
        assert torch.equal(model(ids), reference)
    assert isinstance(model.trf_blocks[0].att.W_query.linear, LinearWithLoRA)


def test_merge_refuses_a_wrapper_that_computes_something_else(tiny_cfg):
    class OddLoRA(nn.Module):  # same attributes, different formula (B @ A order, no scaling)
        def __init__(self, linear):
            super().__init__()
            self.linear = linear
            self.lora = nn.Module()
            self.lora.A = nn.Parameter(torch.randn(linear.in_features, 2))
            self.lora.B = nn.Parameter(torch.randn(2, linear.out_features))
            self.lora.scaling = 2.0

        def forward(self, x):
            return self.linear(x) + x @ self.lora.A @ self.lora.B  # forgets the scaling

    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU())
    model[0] = OddLoRA(model[0])
    weight = model[0].linear.weight.detach().clone()
    with pytest.raises(ValueError, match="does not compute"):
        merge_lora(model)
    assert isinstance(model[0], OddLoRA) and torch.equal(model[0].linear.weight, weight)
    torch.testing.assert_close(lora_update(model[0]),
                               2.0 * (model[0].lora.A @ model[0].lora.B).T.detach())


# --- precision -------------------------------------------------------------------------------

def test_resolve_precision(monkeypatch):
    assert resolve_precision("fp32", "cpu") == Precision("fp32", None, "as asked")
    assert resolve_precision(torch.bfloat16, "cpu").dtype == torch.bfloat16
    assert resolve_precision("float32", "cpu").autocast is False
    with pytest.raises(ValueError, match="bf16"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="Unknown precision"):
        resolve_precision("int8", "cpu")
    monkeypatch.setattr(devices, "cpu_bf16_instructions", lambda: None)
    auto = resolve_precision("auto", "cpu")
    assert auto.dtype is None and "no bf16" in auto.reason
    assert "emulated" in resolve_precision("bf16", "cpu").reason
    monkeypatch.setattr(devices, "cpu_bf16_instructions", lambda: "AVX512-BF16")
    auto = resolve_precision("auto", "cpu")
    assert auto.dtype == torch.bfloat16 and "AVX512-BF16" in auto.describe()
    assert resolve_precision("auto", "meta").dtype is None  # other devices: fp32 unless asked


def test_bf16_logits_are_within_tolerance_and_hooks_go_away(tiny_cfg, messages):
    model = lora_gpt(tiny_cfg, seed=2).eval()
    batches = list(make_loader(messages, batch_size=8))
    reference = class_logits(model, batches)
    bf16 = resolve_precision("bf16", "cpu")
    with autocast_forward(model, bf16, "cpu"):
        with torch.no_grad():
            out = model(batches[0].input_ids)
        assert out.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
        with pytest.raises(ValueError, match="context length"):  # a forward that fails
            model(torch.zeros(1, 300, dtype=torch.long))
        assert not torch.is_autocast_enabled("cpu")
        low = class_logits(model, batches)
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert 0 < (low - reference).abs().max().item() < BF16_LOGIT_ATOL
    assert torch.equal(low.argmax(-1), reference.argmax(-1))
    with frozen_weights_in(model, torch.bfloat16) as count:  # same numbers as autocast alone
        assert count > 0 and model.trf_blocks[0].att.W_query.linear.weight.dtype == torch.bfloat16
        assert model.trf_blocks[0].att.W_query.lora.A.dtype == torch.float32
        with autocast_forward(model, bf16, "cpu"):
            assert torch.equal(class_logits(model, batches), low)
    assert model.trf_blocks[0].att.W_query.linear.weight.dtype == torch.float32
    assert torch.equal(class_logits(model, batches), reference)
    loss32, acc32 = evaluate(batches, model, last_token_logits)
    loss16, acc16 = evaluate(batches, model, last_token_logits, precision="bf16")
    assert loss16 == pytest.approx(loss32, abs=BF16_LOSS_ATOL)


def test_bf16_training_reaches_the_same_loss_and_restores_frozen_weights(tiny_cfg, messages,
                                                                          capsys):
    loader = make_loader(messages, batch_size=8)
    histories, models = {}, {}
    for precision in ("fp32", "bf16"):
        model = lora_gpt(tiny_cfg, seed=3, nonzero_b=False)
        frozen = {n: p.detach().clone() for n, p in model.named_parameters()
                  if not p.requires_grad}
        optimizer = make_optimizer(model, lr=3e-3, weight_decay=0.0)
        histories[precision] = train_classifier(
            model, loader, loader, optimizer, num_epochs=4, seed=3, step_fn=train_step,
            logits_fn=last_token_logits, device="cpu", progress=precision == "bf16",
            precision=precision)
        for name, param in model.named_parameters():
            assert param.dtype == torch.float32, name
            if name in frozen:
                assert torch.equal(param, frozen[name]), name
        assert not model._forward_hooks and not model._forward_pre_hooks
        models[precision] = model
    fp32, bf16 = histories["fp32"], histories["bf16"]
    assert fp32.settings["precision"] == "fp32" and fp32.settings["frozen_weights"] == "fp32"
    assert bf16.settings["precision"] == "bf16" and bf16.settings["frozen_weights"] == "bf16"
    printed = capsys.readouterr()
    assert "precision bf16 autocast" in printed.out + printed.err
    assert fp32.batch_loss[0] == pytest.approx(math.log(2), abs=0.1)
    assert fp32.train_loss[-1] < 0.8 * fp32.batch_loss[0]  # it learned something
    for a, b in zip(fp32.batch_loss, bf16.batch_loss):
        assert b == pytest.approx(a, abs=0.05)
    assert bf16.train_loss[-1] == pytest.approx(fp32.train_loss[-1], abs=0.03)
    assert bf16.train_acc[-1] == pytest.approx(fp32.train_acc[-1], abs=0.05)


def test_frozen_weights_stay_float32_when_asked(tiny_cfg, messages):
    model = lora_gpt(tiny_cfg, seed=4, nonzero_b=False)
    loader = make_loader(messages, batch_size=8)
    seen = []

    def spy_step(model, batch, optimizer):
        seen.append((model.trf_blocks[0].ff.layers[0].linear.weight.dtype,
                     torch.is_autocast_enabled("cpu")))
        return train_step(model, batch, optimizer)

    history = train_classifier(model, loader, loader, make_optimizer(model), num_epochs=1,
                               max_batches=1, step_fn=spy_step, logits_fn=last_token_logits,
                               device="cpu", progress=False, precision="bf16",
                               frozen_weights=False)
    assert seen == [(torch.float32, False)]  # autocast is on around the forward pass only
    assert history.settings["frozen_weights"] == "fp32"
    with pytest.raises(ValueError, match="frozen_weights"):
        train_classifier(model, loader, loader, make_optimizer(model), num_epochs=1,
                         step_fn=train_step, logits_fn=last_token_logits, progress=False,
                         frozen_weights="sometimes")


def test_gpu_choices_are_made_right_without_a_gpu(monkeypatch, tiny_cfg):
    from helpers import env_info
    from helpers.devices import batch_to_device, cuda_bf16_native
    from helpers.training import training_settings

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Mock H100")
    for capability, native in (((9, 0), True), ((8, 0), True), ((7, 5), False)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        assert cuda_bf16_native("cuda") is native
        precision = resolve_precision("auto", "cuda")
        assert precision.dtype == (torch.bfloat16 if native else None), capability
    assert env_info.pick_device() == torch.device("cuda")  # cuda first when there is one
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    settings, precision = training_settings([], device=None)
    assert settings.device == "cuda" and settings.device_detail == "cuda (Mock H100)"
    assert precision.name == "bf16" and settings.frozen_weights == "bf16"
    assert resolve_precision("fp16", "cuda").dtype == torch.float16  # on request only

    entered = []

    class RecordingAutocast:  # what torch.autocast would be asked on the GPU
        def __init__(self, device_type, dtype):
            entered.append((device_type, dtype))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    monkeypatch.setattr(torch, "autocast", RecordingAutocast)
    model = nn.Linear(3, 2)
    with autocast_forward(model, precision, "cuda"):
        out = model(torch.randn(4, 3))
    assert entered == [("cuda", torch.bfloat16)] and out.dtype == torch.float32
    batch = SpamBatch(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                      torch.ones(2, dtype=torch.long))
    moved = batch_to_device(batch, "meta")  # any device but the CPU: every part moves
    assert isinstance(moved, SpamBatch) and all(t.device.type == "meta" for t in moved)
