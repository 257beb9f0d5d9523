"""The 128x128 unconditional ResNet pair of docs/architectures.md (paper Sec. 5, ILSVRC2012).

Follows the authors' released TensorFlow code (``no_gamma-ResNet/gan``): both convs of a
block map to the block's output width, upsampling is nearest-neighbour, downsampling is
2x2 average pooling, and every conv/linear layer has a bias.

Init is TF's ``variance_scaling(scale, mode="fan_avg", distribution="uniform")`` as in the
reference: scale 2 for the 3x3 convs inside blocks, scale 1 for 1x1 shortcut convs, the
linear layers and the generator's output conv.

The discriminator only uses ``nn.Conv2d`` / ``nn.Linear`` modules (activations, pooling
and upsampling are functional), so a weight reparametrization applied to every conv and
linear module of D sees every layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

RESOLUTION = 128
_G_CHANNELS = (1024, 1024, 512, 256, 128, 64)
_D_CHANNELS = (64, 128, 256, 512, 1024, 1024)


def _init_variance_scaling_(layer: nn.Conv2d | nn.Linear, scale: float) -> None:
    # TF's fan_avg/uniform variance scaling: U(-b, b), b = sqrt(6 scale / (fan_in + fan_out)),
    # which is exactly Xavier-uniform with gain sqrt(scale).
    nn.init.xavier_uniform_(layer.weight, gain=math.sqrt(scale))
    nn.init.zeros_(layer.bias)


def _conv(c_in: int, c_out: int, kernel: int, scale: float) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
    _init_variance_scaling_(conv, scale)
    return conv


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class UpBlock(nn.Module):
    """Generator residual block: BN, ReLU, upsample x2, conv3x3, BN, ReLU, conv3x3;
    shortcut: upsample x2, conv1x1."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = _conv(c_in, c_out, 3, scale=2.0)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv(c_out, c_out, 3, scale=2.0)
        self.shortcut = _conv(c_in, c_out, 1, scale=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_upsample(F.relu(self.bn1(x))))
        h = self.conv2(F.relu(self.bn2(h)))
        return h + self.shortcut(_upsample(x))


class DownBlock(nn.Module):
    """Discriminator residual block: ReLU, conv3x3, ReLU, conv3x3, avg-pool 2; shortcut:
    conv1x1, avg-pool 2.

    ``first``: no leading ReLU, and the shortcut pools before its conv1x1 (as in the
    reference; equal in value, but the conv then sees a half-size input, which matters for
    the operator-norm modes of docs/normalization.md). ``downsample=False`` drops both poolings.
    """

    def __init__(
        self, c_in: int, c_out: int, *, first: bool = False, downsample: bool = True
    ) -> None:
        super().__init__()
        if first and not downsample:
            raise ValueError("the first DownBlock always downsamples")
        self.first = first
        self.downsample = downsample
        self.conv1 = _conv(c_in, c_out, 3, scale=2.0)
        self.conv2 = _conv(c_out, c_out, 3, scale=2.0)
        self.shortcut = _conv(c_in, c_out, 1, scale=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x if self.first else F.relu(x))
        h = self.conv2(F.relu(h))
        if self.first:
            return F.avg_pool2d(h, 2) + self.shortcut(F.avg_pool2d(x, 2))
        s = self.shortcut(x)
        if self.downsample:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


class ResNetGenerator(nn.Module):
    """ResNet generator (docs/architectures.md): z [B, z_dim] -> [B, channels, 128, 128] in (-1, 1).

    linear to 4*4*1024, reshape; up-blocks to 1024, 512, 256, 128, 64 channels; BN, ReLU,
    conv3x3 to ``channels``, tanh.
    """

    output_range = (-1.0, 1.0)

    def __init__(self, z_dim: int = 128, channels: int = 3) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.linear = nn.Linear(z_dim, 4 * 4 * _G_CHANNELS[0])
        _init_variance_scaling_(self.linear, 1.0)
        pairs = zip(_G_CHANNELS[:-1], _G_CHANNELS[1:], strict=True)
        self.blocks = nn.Sequential(*(UpBlock(c_in, c_out) for c_in, c_out in pairs))
        self.bn = nn.BatchNorm2d(_G_CHANNELS[-1])
        self.conv_out = _conv(_G_CHANNELS[-1], channels, 3, scale=1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.linear(z).view(-1, _G_CHANNELS[0], 4, 4))
        return torch.tanh(self.conv_out(F.relu(self.bn(h))))


class ResNetDiscriminator(nn.Module):
    """docs/architectures.md ResNet discriminator: image [B, channels, 128, 128] -> logits [B].

    Down-blocks to 64 (first block), 128, 256, 512, 1024 channels, then a 1024-channel
    block without downsampling (its shortcut is still a 1x1 conv, as in the reference);
    ReLU, sum over space, linear to 1.
    """

    negative_slope = 0.0

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        widths = (channels, *_D_CHANNELS)
        blocks = [DownBlock(widths[0], widths[1], first=True)]
        pairs = zip(widths[1:-2], widths[2:-1], strict=True)
        blocks += [DownBlock(c_in, c_out) for c_in, c_out in pairs]
        blocks.append(DownBlock(widths[-2], widths[-1], downsample=False))
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(widths[-1], 1)
        _init_variance_scaling_(self.linear, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.linear(h).squeeze(1)
