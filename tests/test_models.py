"""Architecture tests for models/ (docs/architectures.md): parameter counts, shapes, init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models import (
    MODELS,
    CNNDiscriminator,
    CNNGenerator,
    MNISTDiscriminator,
    MNISTGenerator,
    ResNetDiscriminator,
    ResNetGenerator,
    build_models,
)

# Expected counts are computed from the layer shapes docs/architectures.md lists,
# independently of the code.
CNN_D_CONVS = [
    (3, 1, 64),
    (4, 2, 64),
    (3, 1, 128),
    (4, 2, 128),
    (3, 1, 256),
    (4, 2, 256),
    (3, 1, 512),
]
CNN_SIZES = [(32, 3), (48, 3), (64, 3)]  # CIFAR10, STL10, CelebA
TRUNC_STD = 0.02 * 0.8796  # std of N(0, 0.02^2) truncated at +-2 std


def conv_params(k: int, c_in: int, c_out: int) -> int:
    return k * k * c_in * c_out + c_out


def linear_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def bn_params(c: int) -> int:
    return 2 * c


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_output_sizes(d: nn.Module, x: torch.Tensor) -> list[int]:
    """Spatial size of the input, then of each Conv2d output, in forward order."""
    sizes = [x.shape[-1]]
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
        for m in d.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        d(x)
    for h in hooks:
        h.remove()
    return sizes


def assert_only_conv_and_linear_params(d: nn.Module) -> None:
    """Every parameter of D belongs to a Conv2d or Linear (so a reparametrization of those
    modules covers all of D), and D has no normalization layers or buffers."""
    owned = {
        id(p)
        for m in d.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
        for p in m.parameters(recurse=False)
    }
    assert all(id(p) in owned for p in d.parameters())
    assert all(m.bias is not None for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert list(d.buffers()) == []


# ---------------------------------------------------------------------------------- CNN


@pytest.fixture(scope="module", params=CNN_SIZES, ids=["cifar10", "stl10", "celeba"])
def cnn_pair(request: pytest.FixtureRequest) -> tuple[int, int, nn.Module, nn.Module]:
    resolution, channels = request.param
    return resolution, channels, *build_models("cnn", resolution, channels)


def test_cnn_param_counts(cnn_pair: tuple[int, int, nn.Module, nn.Module]) -> None:
    resolution, channels, g, d = cnn_pair
    mg = resolution // 8
    expected_d, c_in = linear_params(512 * mg * mg, 1), channels
    for k, _, c_out in CNN_D_CONVS:
        expected_d += conv_params(k, c_in, c_out)
        c_in = c_out
    n = mg * mg * 512
    expected_g = linear_params(128, n) + bn_params(n) + conv_params(3, 64, channels)
    for c_in, c_out in [(512, 256), (256, 128), (128, 64)]:
        expected_g += conv_params(4, c_in, c_out) + bn_params(c_out)
    assert n_params(d) == expected_d
    assert n_params(g) == expected_g


def test_cnn_shapes(cnn_pair: tuple[int, int, nn.Module, nn.Module]) -> None:
    r, channels, g, d = cnn_pair
    x = g(torch.randn(2, 128))
    assert x.shape == (2, channels, r, r)
    assert d(x).shape == (2,)
    assert d(x[:1]).shape == (1,)
    assert conv_output_sizes(d, x) == [r, r, r // 2, r // 2, r // 4, r // 4, r // 8, r // 8]


def test_cnn_discriminator_layers() -> None:
    d = CNNDiscriminator(32, 3)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size[0], m.stride[0], m.out_channels) for m in convs] == CNN_D_CONVS
    assert all(m.padding == (1, 1) for m in convs)
    assert conv_output_sizes(d, torch.zeros(1, 3, 32, 32)) == [32, 32, 16, 16, 8, 8, 4, 4]
    leaky = [m for m in d.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 7 and all(m.negative_slope == 0.1 for m in leaky)
    assert d.negative_slope == 0.1
    assert_only_conv_and_linear_params(d)


def test_cnn_discriminator_init() -> None:
    torch.manual_seed(0)
    d = CNNDiscriminator(32, 3)
    for m in d.modules():
        if isinstance(m, nn.Conv2d):
            assert m.weight.abs().max() <= 0.04
            assert m.weight.std().item() == pytest.approx(TRUNC_STD, abs=0.0015)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert torch.all(m.bias == 0)
    assert d.linear.weight.std().item() == pytest.approx(0.02, abs=0.001)


def test_cnn_generator_init_and_range() -> None:
    torch.manual_seed(0)
    g = CNNGenerator()
    assert g.z_dim == 128 and g.output_range == (-1.0, 1.0)
    for m in g.modules():
        if isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
            assert m.weight.std().item() == pytest.approx(0.02, abs=0.0015)
            assert torch.all(m.bias == 0)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    lo, hi = g.output_range
    x = g(100 * torch.randn(4, 128))
    assert x.min() >= lo and x.max() <= hi


# ------------------------------------------------------------------------------- ResNet

RESNET_G_BLOCKS = [(1024, 1024), (1024, 512), (512, 256), (256, 128), (128, 64)]
RESNET_D_BLOCKS = [(3, 64), (64, 128), (128, 256), (256, 512), (512, 1024), (1024, 1024)]


@pytest.fixture(scope="module")
def resnet_pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return build_models("resnet", 128, 3)


def test_resnet_param_counts(resnet_pair: tuple[nn.Module, nn.Module]) -> None:
    g, d = resnet_pair
    expected_g = linear_params(128, 4 * 4 * 1024)
    for c_in, c_out in RESNET_G_BLOCKS:
        expected_g += bn_params(c_in) + conv_params(3, c_in, c_out)
        expected_g += bn_params(c_out) + conv_params(3, c_out, c_out) + conv_params(1, c_in, c_out)
    expected_g += bn_params(64) + conv_params(3, 64, 3)
    expected_d = linear_params(1024, 1)
    for c_in, c_out in RESNET_D_BLOCKS:
        expected_d += conv_params(3, c_in, c_out) + conv_params(3, c_out, c_out)
        expected_d += conv_params(1, c_in, c_out)
    assert n_params(g) == expected_g
    assert n_params(d) == expected_d


def test_resnet_forward_shapes(resnet_pair: tuple[nn.Module, nn.Module]) -> None:
    g, d = resnet_pair
    assert g.z_dim == 128 and g.output_range == (-1.0, 1.0) and d.negative_slope == 0.0
    with torch.no_grad():
        x = g.eval()(torch.randn(1, 128))
    assert x.shape == (1, 3, 128, 128)
    assert x.min() >= -1 and x.max() <= 1
    # Per block: conv1, conv2 at the input size, then the shortcut conv1x1 (the first
    # block's shortcut sees the pooled input); the last block does not downsample.
    sizes = conv_output_sizes(d, x)
    assert sizes == [128, 128, 128, 64, 64, 64, 64, 32, 32, 32, 16, 16, 16, 8, 8, 8, 4, 4, 4]
    with torch.no_grad():
        assert d(x).shape == (1,)


def test_resnet_discriminator_layers(resnet_pair: tuple[nn.Module, nn.Module]) -> None:
    _, d = resnet_pair
    layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 3 * len(RESNET_D_BLOCKS) + 1
    assert_only_conv_and_linear_params(d)


def test_resnet_init(resnet_pair: tuple[nn.Module, nn.Module]) -> None:
    g, d = resnet_pair
    for net in (g, d):
        for m in net.modules():
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            w = m.weight
            rf = w[0, 0].numel()
            fan_in, fan_out = w.shape[1] * rf, w.shape[0] * rf
            scale = 2.0 if rf == 9 and m is not getattr(net, "conv_out", None) else 1.0
            bound = math.sqrt(6 * scale / (fan_in + fan_out))
            assert w.abs().max() <= bound
            if w.numel() > 1000:
                assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
            assert torch.all(m.bias == 0)


# -------------------------------------------------------------------------------- MNIST


def test_mnist_param_counts_and_shapes() -> None:
    g, d = build_models("dcgan_mnist", 28, 1)
    expected_d = conv_params(4, 1, 64) + conv_params(4, 64, 128) + linear_params(128 * 7 * 7, 1)
    assert n_params(d) == expected_d
    assert n_params(g) == (
        linear_params(128, 7 * 7 * 128)
        + bn_params(7 * 7 * 128)
        + conv_params(4, 128, 64)
        + bn_params(64)
        + conv_params(4, 64, 1)
    )
    x = g(100 * torch.randn(3, 128))
    assert x.shape == (3, 1, 28, 28)
    assert g.output_range == (0.0, 1.0) and x.min() >= 0 and x.max() <= 1
    assert d(x).shape == (3,)
    assert conv_output_sizes(d, x) == [28, 14, 7]
    assert d.negative_slope == 0.1
    assert_only_conv_and_linear_params(d)


def test_mnist_init() -> None:
    torch.manual_seed(0)
    d, g = MNISTDiscriminator(), MNISTGenerator()
    for m in d.features:
        if isinstance(m, nn.Conv2d):
            assert m.weight.abs().max() <= 0.04 and torch.all(m.bias == 0)
    assert d.features[2].weight.std().item() == pytest.approx(TRUNC_STD, abs=0.001)
    assert g.net[0].weight.std().item() == pytest.approx(0.02, abs=0.001)


# ----------------------------------------------------------------------------- registry


def test_registry_builds_all() -> None:
    assert MODELS == ("cnn", "resnet", "dcgan_mnist")
    g, d = build_models("cnn", 48, 3, z_dim=64, negative_slope=0.2)
    assert isinstance(g, CNNGenerator) and isinstance(d, CNNDiscriminator)
    assert g.z_dim == 64 and d.negative_slope == 0.2
    assert g(torch.randn(2, 64)).shape == (2, 3, 48, 48)
    g, d = build_models("dcgan_mnist", 28, 1)
    assert isinstance(g, MNISTGenerator) and isinstance(d, MNISTDiscriminator)


def test_registry_resnet_classes(resnet_pair: tuple[nn.Module, nn.Module]) -> None:
    g, d = resnet_pair
    assert isinstance(g, ResNetGenerator) and isinstance(d, ResNetDiscriminator)


@pytest.mark.parametrize(
    ("name", "resolution", "message"),
    [
        ("dcgan", 32, "expected one of"),
        ("cnn", 36, "multiple of 8"),
        ("cnn", 8, "at least 16"),
        ("resnet", 64, "only supports resolution 128"),
        ("dcgan_mnist", 32, "only supports resolution 28"),
    ],
)
def test_registry_errors(name: str, resolution: int, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        build_models(name, resolution, 3)
    assert str(resolution) in str(info.value) or name in str(info.value)


def test_cnn_width_scales_every_channel_count() -> None:
    g, d = build_models("cnn", 24, 3, width=0.25)
    d_convs = [m.out_channels for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert d_convs == [16, 16, 32, 32, 64, 64, 128]
    g_convs = [m.out_channels for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert g_convs == [64, 32, 16, 3]
    assert g(torch.randn(2, 128)).shape == (2, 3, 24, 24) and d(
        torch.zeros(2, 3, 24, 24)
    ).shape == (2,)
    full = sum(p.numel() for p in build_models("cnn", 24, 3)[1].parameters())
    assert sum(p.numel() for p in d.parameters()) < full / 10


@pytest.mark.parametrize(("name", "width"), [("cnn", 0.0), ("cnn", -1.0), ("dcgan_mnist", 0.5)])
def test_bad_width_names_the_value(name: str, width: float) -> None:
    with pytest.raises(ValueError, match=f"width.*{width}|{width}.*width"):
        build_models(name, 28 if name == "dcgan_mnist" else 24, 1, width=width)
