"""A small ResNet for 3x64x64 images (Tiny-ImageNet size), written from scratch.

The recipe, with widths w = (64, 128, 256) and n = blocks_per_stage, e.g. (2, 2, 2) or (3, 3, 3):

    ResNet                                                             feature map
    ├── stem: Conv 3x3 (3 -> w0, stride 1) -> BN -> ReLU -> MaxPool 2x2     64x64 -> 32x32
    ├── stages
    │     ├── 0: n0 x ResidualBlock(-> w0)                                  32x32
    │     ├── 1: n1 x ResidualBlock(-> w1), the first one with stride 2     16x16
    │     └── 2: n2 x ResidualBlock(-> w2), the first one with stride 2      8x8
    ├── pool: global average pooling                                   (batch, w2)
    └── fc: Linear (w2 -> num_classes)

    ResidualBlock(in -> out, stride s):
        conv1 3x3 (in -> out, stride s) -> norm1 -> ReLU -> drop (Dropout2d)
        -> conv2 3x3 (out -> out) -> norm2, plus the shortcut, then ReLU.
        shortcut: identity, or Conv 1x1 (in -> out, stride s) -> BN when the shape changes.

Every 3x3 convolution has padding 1. With batch norm on, convolutions have no bias (BN's shift
does that job); with `batch_norm=False` the norms are identities and every convolution has a
bias.

Parameter counts with batch norm and 200 classes (the test redoes the arithmetic):
    stem 1,856; stage 0: 73,984 per block; stage 1: 230,144 for the first block, then
    295,424; stage 2: 919,040 for the first block, then 1,180,672; fc 51,400.
    (2, 2, 2): 2,826,504 parameters.   (3, 3, 3): 4,376,584 parameters.

LoRA: the head is named `fc`, not `out_head`, so the lab's `replace_linear_with_lora` (which
skips only `out_head`) wraps it: it is the ResNet's only nn.Linear, and LoRA on nn.Linear leaves
the convolutions alone. After `freeze_and_activate_lora` with rank r only fc's A and B train:
r * (w2 + num_classes) parameters, i.e. 3,648 for rank 8 and 200 classes, of 2,830,152 in all
for (2, 2, 2) and 4,380,232 for (3, 3, 3). (A new task's head would also need fc.linear
unfrozen: w2 * num_classes + num_classes more.)

Why a fresh network starts at a loss of log(C): with C classes, uniform predictions give a
cross-entropy of exactly log(C) (log(200) = 5.298). Small logits give a softmax close to
uniform, so two init choices keep a fresh network's logits small:

- `small_head_init`: fc's weights are drawn with std HEAD_INIT_STD (0.001) and its bias is
  zero, so the logits start around 0.02 (the pooled features have a norm of about 20).
  PyTorch's default (uniform, bound 1/sqrt(w2), std 0.036 for w2 = 256) gives logits about
  36 times larger, hence a loss above log(C) that the first steps spend undoing.
- `zero_init_residual`: the last layer of each residual branch (norm2's scale, or conv2 without
  batch norm) starts at zero, so every block starts as its shortcut. Activations then keep the
  same scale whatever the depth instead of growing block after block, and deep ResNets train
  better from the first steps (Goyal et al., 2017).

Convolutions use He (Kaiming) normal init, which keeps the activations' scale through
conv + ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEAD_INIT_STD = 0.001
RESNET_PARAMETER_COUNTS = {(2, 2, 2): 2_826_504, (3, 3, 3): 4_376_584}  # 200 classes, with BN


def _conv3x3(in_channels: int, out_channels: int, stride: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class ResidualBlock(nn.Module):
    """conv1 -> norm1 -> ReLU -> Dropout2d -> conv2 -> norm2, plus a shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 dropout: float = 0.0, batch_norm: bool = True):
        super().__init__()
        bias = not batch_norm
        self.conv1 = _conv3x3(in_channels, out_channels, stride, bias)
        self.norm1 = _norm(out_channels, batch_norm)
        self.drop = nn.Dropout2d(dropout)
        self.conv2 = _conv3x3(out_channels, out_channels, 1, bias)
        self.norm2 = _norm(out_channels, batch_norm)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias),
                _norm(out_channels, batch_norm),
            )

    def zero_init_branch(self) -> None:
        """Make the residual branch output zero, so the block starts as its shortcut."""
        last = self.norm2 if isinstance(self.norm2, nn.BatchNorm2d) else self.conv2
        nn.init.zeros_(last.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop(F.relu(self.norm1(self.conv1(x))))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet classifier: images (batch, 3, 64, 64) -> logits (batch, num_classes).

    `dropout` is the Dropout2d rate inside each block (0: off). Any image size of at least 8x8
    works (global average pooling); 64x64 is the one the recipe above is laid out for. Use
    small `widths` (e.g. (8, 16, 32)) for quick CPU experiments.
    """

    def __init__(self, num_classes: int = 200, blocks_per_stage: tuple[int, ...] = (2, 2, 2),
                 widths: tuple[int, ...] = (64, 128, 256), dropout: float = 0.0,
                 batch_norm: bool = True, small_head_init: bool = True,
                 zero_init_residual: bool = True):
        super().__init__()
        if len(widths) != len(blocks_per_stage) or min(blocks_per_stage, default=0) < 1:
            raise ValueError(f"Give one width per stage and at least one block per stage; got "
                             f"widths={widths} and blocks_per_stage={blocks_per_stage}.")
        self.stem = nn.Sequential(
            _conv3x3(3, widths[0], 1, bias=not batch_norm),
            _norm(widths[0], batch_norm),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        stages, channels = [], widths[0]
        for index, (width, num_blocks) in enumerate(zip(widths, blocks_per_stage)):
            blocks = []
            for block in range(num_blocks):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(ResidualBlock(channels, width, stride, dropout, batch_norm))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights(small_head_init, zero_init_residual)

    def _init_weights(self, small_head_init: bool, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, ResidualBlock):
                    module.zero_init_branch()
        if small_head_init:
            nn.init.normal_(self.fc.weight, std=HEAD_INIT_STD)
            nn.init.zeros_(self.fc.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"Expected images of shape (batch, 3, height, width), got {tuple(images.shape)}. "
                "For a single image (3, H, W) add the batch dimension: images.unsqueeze(0)."
            )
        features = self.pool(self.stages(self.stem(images))).flatten(1)
        return self.fc(features)
