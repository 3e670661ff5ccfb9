import math
import time
from collections import namedtuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder.solutions import add_classification_head, last_token_logits, train_step
from helpers.gpt import GPTModel
from helpers.image_data import synthetic_images
from helpers.paths import img_dir
from helpers.resnet import ResNet
from helpers.sanity import (
    MAX_LR_FINDER_STEPS,
    initial_loss_check,
    lr_finder,
    overfit_one_batch,
)


pytestmark = pytest.mark.usefixtures("single_thread")


def gpt_forward(model, batch):
    input_ids, labels, last_idx = batch
    return last_token_logits(model(input_ids), last_idx), labels


@pytest.fixture
def gpt_classifier(tiny_cfg):
    torch.manual_seed(0)
    return add_classification_head(GPTModel(tiny_cfg), num_classes=2)


@pytest.fixture
def gpt_batch():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 50257, (6, 12), generator=generator)
    last_idx = torch.tensor([11, 4, 7, 11, 2, 9])
    input_ids[torch.arange(12) > last_idx[:, None]] = 50256  # right padding
    return input_ids, torch.tensor([0, 1, 0, 1, 1, 0]), last_idx


@pytest.fixture
def small_resnet():
    torch.manual_seed(0)
    return ResNet(4, (1, 1, 1), widths=(8, 16, 32))


@pytest.fixture
def image_batch():
    return synthetic_images(num_classes=4, per_class=2, seed=1)


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_weights(model, weights):
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0, msg=name)


# --- initial loss ---------------------------------------------------------------------------

def test_initial_loss_on_gpt2_classifier(gpt_classifier, gpt_batch):
    gpt_classifier.train()
    report = initial_loss_check(gpt_classifier, gpt_batch, 2, forward_fn=gpt_forward)
    assert report.ok, str(report)
    assert report.expected == pytest.approx(math.log(2))
    assert report.abs_deviation == pytest.approx(abs(report.loss - math.log(2)))
    assert report.rel_deviation == pytest.approx(report.abs_deviation / math.log(2))
    assert gpt_classifier.training  # mode put back
    text = str(report)
    assert "log(2) = 0.6931" in text and "OK" in text


def test_initial_loss_explains_3d_logits(gpt_classifier, gpt_batch):
    report = initial_loss_check(gpt_classifier, gpt_batch, 2)  # default forward: (b, seq, C)
    assert not report.ok and math.isnan(report.loss)
    assert "last_token_logits" in report.message


def test_initial_loss_detects_softmax_applied_twice():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 200), nn.Softmax(dim=-1))
    batch = (torch.randn(16, 5), torch.randint(0, 200, (16,)))
    report = initial_loss_check(model, batch, 200)
    assert report.rel_deviation < 0.01  # the loss alone looks perfect...
    assert not report.ok and "softmax is applied twice" in report.message  # ...but it is not


def test_initial_loss_wrong_number_of_classes_and_labels():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    report = initial_loss_check(model, (torch.randn(4, 5), torch.tensor([0, 1, 2, 0])), 2)
    assert not report.ok and "outputs 3 logits" in report.message
    report = initial_loss_check(nn.Linear(5, 2), (torch.randn(4, 5), torch.tensor([0, 2, 1, 0])), 2)
    assert not report.ok and "class indices 0..1" in report.message
    assert math.isnan(report.loss)
    with pytest.raises(ValueError, match="at least 2"):
        initial_loss_check(model, (torch.randn(4, 5), torch.zeros(4, dtype=torch.long)), 1)


def test_initial_loss_too_high_and_too_low():
    torch.manual_seed(0)
    loud = nn.Linear(5, 10)
    nn.init.normal_(loud.weight, std=10.0)
    batch = (torch.randn(32, 5), torch.randint(0, 10, (32,)))
    report = initial_loss_check(loud, batch, 10)
    assert not report.ok and report.loss > report.expected
    assert "too high" in report.message and "head's init" in report.message
    assert "CHECK THIS" in str(report)

    def cheating_forward(model, batch):
        return 5.0 * F.one_hot(batch[1], 10).float(), batch[1]

    report = initial_loss_check(loud, batch, 10, forward_fn=cheating_forward)
    assert not report.ok and report.loss < report.expected and "not fresh" in report.message


def test_named_tuple_batches_keep_their_type():
    Pair = namedtuple("Pair", "inputs labels")
    seen = []

    def forward(model, batch):
        seen.append(type(batch))
        return model(batch.inputs), batch.labels

    batch = Pair(torch.randn(4, 5), torch.tensor([0, 1, 0, 1]))
    initial_loss_check(nn.Linear(5, 2), batch, 2, forward_fn=forward)
    assert seen == [Pair]


# --- overfit one batch ----------------------------------------------------------------------

def test_small_resnet_overfits_one_batch_in_bounded_cpu_time(small_resnet, image_batch):
    weights = snapshot(small_resnet)
    small_resnet.eval()
    start = time.process_time()
    report = overfit_one_batch(small_resnet, image_batch, lr=1e-2, steps=150)
    cpu_seconds = time.process_time() - start
    assert report.ok, str(report)
    assert report.final_loss <= 0.05 < report.initial_loss
    assert len(report.losses) <= 150 and cpu_seconds < 60
    assert_same_weights(small_resnet, weights)  # restored
    assert not small_resnet.training
    path = report.plot()
    assert path == img_dir() / "overfit_one_batch.png" and path.stat().st_size > 0


def test_gpt2_classifier_overfits_with_the_students_train_step(gpt_classifier, gpt_batch):
    report = overfit_one_batch(gpt_classifier, gpt_batch, step_fn=train_step, lr=3e-3,
                               steps=150)
    assert report.ok, str(report)
    report = overfit_one_batch(gpt_classifier, gpt_batch, forward_fn=gpt_forward, lr=3e-3,
                               steps=150, restore=False)
    assert report.ok, str(report)
    after = initial_loss_check(gpt_classifier, gpt_batch, 2, forward_fn=gpt_forward)
    assert after.loss < 0.1 and "not fresh" in after.message  # restore=False kept the training


def test_overfit_says_when_the_loss_does_not_fall(small_resnet, image_batch):
    report = overfit_one_batch(small_resnet, image_batch, lr=0.0, steps=5, progress=False)
    assert not report.ok and len(report.losses) == 5
    assert "does not fall" in report.message and "CHECK THIS" in str(report)
    report = overfit_one_batch(small_resnet, image_batch, lr=1e-4, steps=5, target_loss=1e-3)
    assert not report.ok


def test_overfit_refuses_a_fully_frozen_model(small_resnet, image_batch):
    for param in small_resnet.parameters():
        param.requires_grad = False
    with pytest.raises(ValueError, match="no trainable parameter"):
        overfit_one_batch(small_resnet, image_batch)


# --- learning-rate finder -------------------------------------------------------------------

def test_lr_finder_on_small_resnet(small_resnet, image_batch):
    weights = snapshot(small_resnet)
    result = lr_finder(small_resnet, image_batch, start_lr=1e-5, end_lr=1.0, num_steps=30)
    assert 1 < len(result.lrs) <= 30
    assert len(result.lrs) == len(result.losses) == len(result.raw_losses)
    assert result.lrs[0] == pytest.approx(1e-5)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert ratios == pytest.approx([10 ** (5 / 29)] * len(ratios))  # exponential sweep
    assert all(math.isfinite(loss) for loss in result.losses)
    assert 1e-5 <= result.suggested_lr <= 1.0 and result.suggested_lr in result.lrs
    assert result.plot_path == img_dir() / "lr_finder.png" and result.plot_path.is_file()
    assert_same_weights(small_resnet, weights)
    assert "suggested lr" in str(result)


def test_lr_finder_on_gpt2_classifier_cycles_a_list_of_batches(gpt_classifier, gpt_batch):
    halves = [tuple(part[:3] for part in gpt_batch), tuple(part[3:] for part in gpt_batch)]
    result = lr_finder(gpt_classifier, halves, forward_fn=gpt_forward, num_steps=20,
                       plot=False)
    assert result.plot_path is None and len(result.lrs) > 1
    assert all(math.isfinite(loss) for loss in result.losses)
    assert 1e-7 <= result.suggested_lr <= 10


def test_lr_finder_stops_when_the_loss_diverges():
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    batch = (torch.randn(32, 8), torch.randint(0, 3, (32,)))
    result = lr_finder(model, batch, optimizer=torch.optim.SGD(model.parameters()),
                       start_lr=1e-3, end_lr=1e4, num_steps=60, plot=False)
    assert result.diverged and len(result.lrs) < 60
    assert all(math.isfinite(loss) for loss in result.losses)
    assert result.suggested_lr < result.lrs[-1]
    assert "diverged" in str(result)


def test_lr_finder_checks_its_arguments(small_resnet, image_batch):
    with pytest.raises(ValueError, match="between 5 and"):
        lr_finder(small_resnet, image_batch, num_steps=MAX_LR_FINDER_STEPS + 1)
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        lr_finder(small_resnet, image_batch, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="gave no batch"):
        lr_finder(small_resnet, [], num_steps=10)
