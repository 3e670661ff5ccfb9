import math

import pytest
import torch
from torch import nn

from autograder.solutions import (
    LinearWithLoRA,
    freeze_and_activate_lora,
    replace_linear_with_lora,
)
from helpers.params import count_parameters
from helpers.resnet import RESNET_PARAMETER_COUNTS, ResidualBlock, ResNet
from helpers.sanity import initial_loss_check


def recipe_parameter_count(blocks, num_classes=200, widths=(64, 128, 256), batch_norm=True):
    """The module docstring's recipe, counted by hand."""
    bias = 0 if batch_norm else 1
    norm = 2 if batch_norm else 0  # BN: scale and shift per channel

    def conv(k, cin, cout):
        return k * k * cin * cout + bias * cout

    total = conv(3, 3, widths[0]) + norm * widths[0]  # stem
    channels = widths[0]
    for width, n in zip(widths, blocks):
        for _ in range(n):
            total += conv(3, channels, width) + conv(3, width, width) + 2 * norm * width
            if channels != width:  # the first block of stages 1 and 2: projection shortcut
                total += conv(1, channels, width) + norm * width
            channels = width
    return total + channels * num_classes + num_classes  # fc


def test_documented_parameter_counts_match_the_recipe():
    assert recipe_parameter_count((2, 2, 2)) == 2_826_504
    assert recipe_parameter_count((3, 3, 3)) == 4_376_584
    assert RESNET_PARAMETER_COUNTS == {(2, 2, 2): 2_826_504, (3, 3, 3): 4_376_584}
    for blocks, expected in RESNET_PARAMETER_COUNTS.items():
        assert count_parameters(ResNet(200, blocks)) == (expected, expected)


@pytest.mark.parametrize("kwargs", [
    {"blocks_per_stage": (1, 2, 1), "num_classes": 10},
    {"blocks_per_stage": (2, 2, 2), "batch_norm": False},
    {"blocks_per_stage": (1, 1, 1), "widths": (8, 16, 32), "num_classes": 4},
])
def test_other_configurations_follow_the_recipe(kwargs):
    expected = recipe_parameter_count(kwargs["blocks_per_stage"], kwargs.get("num_classes", 200),
                                      kwargs.get("widths", (64, 128, 256)),
                                      kwargs.get("batch_norm", True))
    assert count_parameters(ResNet(**kwargs))[1] == expected


def test_layout_shapes_and_switches():
    model = ResNet(10, (3, 3, 3), dropout=0.2).eval()
    assert [len(stage) for stage in model.stages] == [3, 3, 3]
    assert isinstance(model.fc, nn.Linear) and model.fc.in_features == 256
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout2d)]
    assert len(drops) == 9 and all(d.p == 0.2 for d in drops)
    assert isinstance(model.stages[0][0].shortcut, nn.Identity)
    assert isinstance(model.stages[1][0].shortcut[0], nn.Conv2d)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
        x = model.stem(torch.randn(1, 3, 64, 64))
        sizes = []
        for stage in model.stages:
            x = stage(x)
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(64, 32, 32), (128, 16, 16), (256, 8, 8)]
    no_bn = ResNet(10, (1, 1, 1), batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in no_bn.modules())
    assert all(m.bias is not None for m in no_bn.modules() if isinstance(m, nn.Conv2d))


def test_init_choices_are_explicit():
    model = ResNet(200, (2, 2, 2))
    assert model.fc.weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert torch.all(model.fc.bias == 0)
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert all(torch.all(b.norm2.weight == 0) for b in blocks)
    no_bn = ResNet(10, (1, 1, 1), batch_norm=False)
    assert all(torch.all(b.conv2.weight == 0) for b in no_bn.modules()
               if isinstance(b, ResidualBlock))
    default_head = ResNet(200, (2, 2, 2), small_head_init=False, zero_init_residual=False)
    assert default_head.fc.weight.abs().max() <= 1 / math.sqrt(256)
    assert default_head.fc.weight.std() > 0.03
    assert all(torch.all(b.norm2.weight == 1) for b in default_head.modules()
               if isinstance(b, ResidualBlock))


@pytest.mark.parametrize("num_classes", [10, 200])
def test_fresh_resnet_starts_near_log_c(num_classes):
    torch.manual_seed(0)
    images = torch.randn(8, 3, 64, 64)
    labels = torch.randint(0, num_classes, (8,))
    report = initial_loss_check(ResNet(num_classes, (2, 2, 2)), (images, labels), num_classes)
    assert report.ok, str(report)
    assert report.rel_deviation < 0.1
    assert report.expected == pytest.approx(math.log(num_classes))


@pytest.mark.parametrize("num_classes", [10, 200])
def test_pytorch_default_head_init_deviates_more(num_classes):
    torch.manual_seed(0)
    batch = (torch.randn(48, 3, 64, 64), torch.randint(0, num_classes, (48,)))
    torch.manual_seed(1)
    small = initial_loss_check(ResNet(num_classes, (2, 2, 2)), batch, num_classes)
    torch.manual_seed(1)
    default = initial_loss_check(ResNet(num_classes, (2, 2, 2), small_head_init=False),
                                 batch, num_classes)
    assert default.abs_deviation > 2 * small.abs_deviation
    assert default.loss > default.expected  # larger logits: further from uniform, higher loss


def test_zero_init_residual_keeps_activations_from_growing_with_depth():
    torch.manual_seed(0)
    images = torch.randn(8, 3, 64, 64)

    def feature_norm(model):
        with torch.no_grad():
            return model.eval().pool(model.stages(model.stem(images))).norm(dim=1).mean().item()

    shallow, deep = feature_norm(ResNet(200, (1, 1, 1))), feature_norm(ResNet(200, (3, 3, 3)))
    growing = feature_norm(ResNet(200, (3, 3, 3), zero_init_residual=False))
    assert deep < 2 * shallow and growing > 10 * deep
    batch = (images, torch.randint(0, 200, (8,)))
    neither = ResNet(200, (3, 3, 3), small_head_init=False, zero_init_residual=False)
    report = initial_loss_check(neither, batch, 200)
    assert not report.ok and "too high" in report.message


def test_forward_rejects_images_without_batch_dimension():
    with pytest.raises(ValueError, match="unsqueeze"):
        ResNet(10, (1, 1, 1), widths=(8, 16, 32))(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="one width per stage"):
        ResNet(10, (2, 2), widths=(8, 16, 32))


def reference_injection(model, rank, alpha):
    """Written independently of the solution: wrap each nn.Linear not named out_head."""
    targets = [name for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] != "out_head"]
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LinearWithLoRA(getattr(parent, child), rank, alpha))
    for name, param in model.named_parameters():
        param.requires_grad = ".lora." in f".{name}"
    return set(targets)


@pytest.mark.parametrize("blocks,total", [((2, 2, 2), 2_830_152), ((3, 3, 3), 4_380_232)])
def test_lora_injection_wraps_exactly_the_linear_head(blocks, total):
    torch.manual_seed(0)
    reference = ResNet(200, blocks)
    targets = reference_injection(reference, rank=8, alpha=16)
    model = ResNet(200, blocks).eval()
    images = torch.randn(2, 3, 64, 64)
    before = model(images).detach()
    replace_linear_with_lora(model, rank=8, alpha=16)
    freeze_and_activate_lora(model)
    wrapped = {name for name, m in model.named_modules() if isinstance(m, LinearWithLoRA)}
    assert wrapped == targets == {"fc"}
    assert count_parameters(model) == count_parameters(reference) == (8 * (256 + 200), total)
    assert count_parameters(model)[0] == 3_648
    torch.testing.assert_close(model(images), before)  # B = 0: same function at first
