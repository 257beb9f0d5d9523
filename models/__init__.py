"""The architectures of docs/architectures.md and a registry to build them by name.

Conventions shared by every model: ``G(z)`` maps ``z`` of shape [B, z_dim] to images
[B, C, H, W] and has attributes ``z_dim`` and ``output_range``; ``D(x)`` returns logits of
shape [B] and has attribute ``negative_slope`` (0.0 for ReLU networks).
"""

from __future__ import annotations

from torch import nn

from models import mnist, resnet
from models.cnn import CNNDiscriminator, CNNGenerator
from models.mnist import MNISTDiscriminator, MNISTGenerator
from models.resnet import ResNetDiscriminator, ResNetGenerator

__all__ = [
    "MODELS",
    "CNNDiscriminator",
    "CNNGenerator",
    "MNISTDiscriminator",
    "MNISTGenerator",
    "ResNetDiscriminator",
    "ResNetGenerator",
    "build_generator",
    "build_models",
]

MODELS = ("cnn", "resnet", "dcgan_mnist")


def build_models(
    name: str,
    resolution: int,
    channels: int,
    z_dim: int = 128,
    negative_slope: float = 0.1,
    width: float = 1.0,
) -> tuple[nn.Module, nn.Module]:
    """Build the (G, D) pair ``name`` for square images of side ``resolution``.

    ``cnn`` takes any resolution that is a multiple of 8 and at least 16 (CIFAR10 32,
    STL10 48, CelebA 64); ``resnet`` only 128; ``dcgan_mnist`` only 28. ``negative_slope``
    is D's leaky-ReLU slope; the ResNet discriminator uses plain ReLU and ignores it.
    ``width`` multiplies the channel counts of ``cnn`` (1 is the paper's; the quick start
    uses a narrower one); the other models take only 1.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    if not width > 0:
        raise ValueError(f"model width must be positive, got {width}")
    if name != "cnn" and width != 1.0:
        raise ValueError(f"model.width={width} is only for model 'cnn'; {name!r} takes 1.0")
    if name == "cnn":
        # D validates the resolution, so build it first.
        d = CNNDiscriminator(
            resolution=resolution, channels=channels, negative_slope=negative_slope, width=width
        )
        g = CNNGenerator(z_dim=z_dim, bottom_width=resolution // 8, channels=channels, width=width)
        return g, d
    if name == "resnet":
        if resolution != resnet.RESOLUTION:
            raise ValueError(
                f"model 'resnet' only supports resolution {resnet.RESOLUTION}, got {resolution}"
            )
        return ResNetGenerator(z_dim=z_dim, channels=channels), ResNetDiscriminator(channels)
    if resolution != mnist.RESOLUTION:
        raise ValueError(
            f"model 'dcgan_mnist' only supports resolution {mnist.RESOLUTION}, got {resolution}"
        )
    return (
        MNISTGenerator(z_dim=z_dim, channels=channels),
        MNISTDiscriminator(channels=channels, negative_slope=negative_slope),
    )


def build_generator(
    name: str, resolution: int, channels: int, z_dim: int = 128, width: float = 1.0
) -> nn.Module:
    """G alone, as ``build_models`` builds it: what an exported generator's ``config`` holds."""
    return build_models(name, resolution, channels, z_dim, width=width)[0]
