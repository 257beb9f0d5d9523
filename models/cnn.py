"""The standard CNN generator/discriminator pair of docs/architectures.md (paper Sec. 5, Table 1).

Used for CIFAR10 (32x32), STL10 (48x48) and CelebA (64x64). Layer shapes, padding and
initialization follow the authors' released TensorFlow code (``no_gamma-CNN/gan``), which
docs/architectures.md follows where the paper text is ambiguous.
"""

from __future__ import annotations

import torch
from torch import nn

INIT_STD = 0.02

# (kernel, stride, out_channels) of the seven discriminator convolutions. Padding 1 gives
# TF's 'SAME' output size for both kinds: 3x3 s1 keeps the size, 4x4 s2 halves it.
_D_CONVS = ((3, 1, 64), (4, 2, 64), (3, 1, 128), (4, 2, 128), (3, 1, 256), (4, 2, 256), (3, 1, 512))
_G_CHANNELS = (512, 256, 128, 64)


def _scaled(channels: int, width: float) -> int:
    """A channel count times `width` (the paper's network is width 1), at least 1."""
    return max(1, round(channels * width))


def init_dcgan_discriminator_(d: nn.Module) -> None:
    """Reference init for D: conv weights N(0, 0.02^2) truncated at +-2 std (TF's
    ``truncated_normal_initializer``), linear weights N(0, 0.02^2), biases 0."""
    for m in d.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=INIT_STD)
            nn.init.zeros_(m.bias)


def init_dcgan_generator_(g: nn.Module) -> None:
    """Reference init for G: linear and transposed-conv weights N(0, 0.02^2), biases 0.

    Batch-norm layers keep PyTorch's default (weight 1, bias 0), as in the reference."""
    for m in g.modules():
        if isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=INIT_STD)
            nn.init.zeros_(m.bias)


class CNNGenerator(nn.Module):
    """CNN generator (docs/architectures.md): z [B, z_dim] -> [B, channels, 8*bw, 8*bw] in (-1, 1).

    linear -> BN -> ReLU -> reshape [512, bw, bw]; three 4x4 stride-2 transposed convs to
    256, 128, 64 channels (each BN + ReLU); 3x3 stride-1 transposed conv to ``channels``;
    tanh. Channel counts are times ``width`` (1 in the paper). The first BN acts on the flat
    linear output (one scale/shift per feature), as the reference applies it before the
    reshape.
    """

    output_range = (-1.0, 1.0)

    def __init__(
        self, z_dim: int = 128, bottom_width: int = 4, channels: int = 3, width: float = 1.0
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.bottom_width = bottom_width
        widths = [_scaled(c, width) for c in _G_CHANNELS]
        n_flat = bottom_width * bottom_width * widths[0]
        layers: list[nn.Module] = [
            nn.Linear(z_dim, n_flat),
            nn.BatchNorm1d(n_flat),
            nn.ReLU(),
            nn.Unflatten(1, (widths[0], bottom_width, bottom_width)),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 3, stride=1, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_dcgan_generator_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class CNNDiscriminator(nn.Module):
    """docs/architectures.md CNN discriminator: image [B, channels, R, R] -> logits [B].

    Seven convs (3x3 s1 64, 4x4 s2 64, 3x3 s1 128, 4x4 s2 128, 3x3 s1 256, 4x4 s2 256,
    3x3 s1 512; times ``width``, which is 1 in the paper), each followed by leaky ReLU, then
    flatten and a linear layer to 1. All
    layers have biases; there are no normalization layers (bssn normalizes D's weights).
    """

    def __init__(
        self,
        resolution: int = 32,
        channels: int = 3,
        negative_slope: float = 0.1,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if resolution % 8 or resolution < 16:
            raise ValueError(
                f"CNNDiscriminator needs a resolution that is a multiple of 8 and at least 16, "
                f"got {resolution}"
            )
        self.resolution = resolution
        self.negative_slope = negative_slope
        layers: list[nn.Module] = []
        c_in = channels
        for k, s, c_out in ((k, s, _scaled(c, width)) for k, s, c in _D_CONVS):
            layers += [nn.Conv2d(c_in, c_out, k, stride=s, padding=1), nn.LeakyReLU(negative_slope)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        bottom = resolution // 8
        self.linear = nn.Linear(c_in * bottom * bottom, 1)
        init_dcgan_discriminator_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x).flatten(1)).squeeze(1)
