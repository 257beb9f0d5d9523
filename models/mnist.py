"""A small DCGAN-style pair for MNIST (28x28x1, pixels in [0, 1]).

The paper reports MNIST results (Tables 4-5), but the architecture it used there cannot
be recovered from the text, and the authors' released code has no MNIST model. docs/architectures.md
therefore prescribes this small stand-in; it is ours, not the paper's, so MNIST numbers
from it are not comparable to the paper's tables.

D: conv4x4 s2 1->64, leaky ReLU, conv4x4 s2 64->128, leaky ReLU, flatten, linear to 1.
G: linear to 7*7*128, BN, ReLU, reshape, transposed conv4x4 s2 to 64, BN, ReLU,
transposed conv4x4 s2 to 1, sigmoid. Initialization as the CNN of docs/architectures.md.
"""

from __future__ import annotations

import torch
from torch import nn

from models.cnn import init_dcgan_discriminator_, init_dcgan_generator_

RESOLUTION = 28


class MNISTGenerator(nn.Module):
    """DCGAN-style MNIST generator: z [B, z_dim] -> image [B, channels, 28, 28] in (0, 1)."""

    output_range = (0.0, 1.0)

    def __init__(self, z_dim: int = 128, channels: int = 1) -> None:
        super().__init__()
        self.z_dim = z_dim
        n_flat = 7 * 7 * 128
        self.net = nn.Sequential(
            nn.Linear(z_dim, n_flat),
            nn.BatchNorm1d(n_flat),
            nn.ReLU(),
            nn.Unflatten(1, (128, 7, 7)),
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.ConvTranspose2d(64, channels, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )
        init_dcgan_generator_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MNISTDiscriminator(nn.Module):
    """DCGAN-style MNIST discriminator: image [B, channels, 28, 28] -> logits [B]."""

    def __init__(self, channels: int = 1, negative_slope: float = 0.1) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.features = nn.Sequential(
            nn.Conv2d(channels, 64, 4, stride=2, padding=1),
            nn.LeakyReLU(negative_slope),
            nn.Conv2d(64, 128, 4, stride=2, padding=1),
            nn.LeakyReLU(negative_slope),
        )
        self.linear = nn.Linear(128 * 7 * 7, 1)
        init_dcgan_discriminator_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x).flatten(1)).squeeze(1)
