"""docs/normalization.md: every normalization mode against exact linear algebra."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

import bssn
from bssn.parametrizations import ConvSpectralNorm

# (c_out, c_in, k, stride) of the paper's CIFAR10 CNN discriminator (docs/architectures.md).
CIFAR_D_CONVS = [
    (64, 3, 3, 1),
    (64, 64, 4, 2),
    (128, 64, 3, 1),
    (128, 128, 4, 2),
    (256, 128, 3, 1),
    (256, 256, 4, 2),
    (512, 256, 3, 1),
]


def converge(layer: nn.Module, steps: int = 400) -> None:
    for _, lyr, norm in bssn.normalized_layers(layer):
        for _ in range(steps):
            norm.advance(lyr.parametrizations.weight.original)


def exact_sigma(matrix: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(matrix.double(), 2).item()


def dense_conv_matrix(conv: nn.Conv2d, h: int, w: int) -> torch.Tensor:
    """T_w as an explicit [out_numel, in_numel] matrix: the conv applied to a basis."""
    n = conv.in_channels * h * w
    basis = torch.eye(n, dtype=torch.float64).view(n, conv.in_channels, h, w)
    out = F.conv2d(basis, conv.weight.detach().double(), None, conv.stride, conv.padding)
    return out.reshape(n, -1).T


@pytest.mark.parametrize("c_out,c_in,k,stride", CIFAR_D_CONVS)
def test_sn_sigma_matches_matrix_norm(c_out: int, c_in: int, k: int, stride: int) -> None:
    conv = nn.Conv2d(c_in, c_out, k, stride, 1)
    w1 = conv.weight.detach().flatten(1).clone()
    bssn.apply(conv, "sn")
    converge(conv)
    sigma = bssn.sigmas(conv)[""]["sigma"]
    assert sigma == pytest.approx(exact_sigma(w1), rel=1e-3)
    # The forward weight is w / sigma(W1): its spectral norm is 1.
    assert exact_sigma(conv.weight.detach().flatten(1)) == pytest.approx(1.0, rel=1e-3)


def test_sn_linear_layer_matches_matrix_norm() -> None:
    linear = nn.Linear(512 * 4 * 4, 1)
    expected = exact_sigma(linear.weight.detach())
    bssn.apply(linear, "sn")
    assert bssn.sigmas(linear)[""]["sigma"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("conv", [True, False])
def test_sn_matches_torch_spectral_norm(conv: bool) -> None:
    """Same u, v and the same steps: `sn` computes torch's spectral_norm weight bit for bit,
    and its gradient (three passes over the weight instead of autograd's seven) equal up to
    float rounding, so training with either stays together."""
    torch.manual_seed(0)
    layer = nn.Conv2d(64, 128, 3, 1, 1) if conv else nn.Linear(300, 40)
    ours = copy.deepcopy(layer)
    theirs = torch.nn.utils.parametrizations.spectral_norm(copy.deepcopy(layer))
    bssn.apply(ours, "sn")
    norm = ours.parametrizations.weight[0]
    norm.w1._u.copy_(theirs.parametrizations.weight[0]._u)
    norm.w1._v.copy_(theirs.parametrizations.weight[0]._v)
    # SGD: an update linear in the gradient keeps rounding differences at rounding size
    # (Adam's g / sqrt(v) can blow one up where g is near 0).
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.5)
    opt_theirs = torch.optim.SGD(theirs.parameters(), lr=0.5)
    shape = (4, 64, 8, 8) if conv else (4, 300)
    for step in range(5):  # each training forward advances once, in both
        x = torch.randn(shape)
        grads, outputs = [], []
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            outputs.append(model(x))
            outputs[-1].square().mean().backward()
            grads.append(model.parametrizations.weight.original.grad.clone())
            opt.step()
        if step == 0:  # identical weights and vectors: the same advance and forward
            assert torch.equal(outputs[0], outputs[1])
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(ours.weight, theirs.weight, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(
            norm.w1._u, theirs.parametrizations.weight[0]._u, rtol=1e-5, atol=1e-6
        )


def test_sn_advances_like_torch_when_only_the_real_pass_advances() -> None:
    """discriminator_step == torch's SN with the real pass in train mode, the fake in eval."""
    layer = nn.Linear(50, 20)
    ours = bssn.apply(copy.deepcopy(layer), "sn")
    theirs = torch.nn.utils.parametrizations.spectral_norm(copy.deepcopy(layer))
    ours.parametrizations.weight[0].w1._u.copy_(theirs.parametrizations.weight[0]._u)
    ours.parametrizations.weight[0].w1._v.copy_(theirs.parametrizations.weight[0]._v)
    real, fake = torch.randn(8, 50), torch.randn(8, 50)
    with bssn.discriminator_step(ours):
        loss_ours = ours(real).mean() - ours(fake).mean()
    loss_theirs = theirs(real).mean() - theirs.eval()(fake).mean()
    loss_ours.backward()
    loss_theirs.backward()
    assert torch.equal(loss_ours, loss_theirs)
    torch.testing.assert_close(
        ours.parametrizations.weight.original.grad,
        theirs.parametrizations.weight.original.grad,
        rtol=1e-5,
        atol=1e-7,
    )


@pytest.mark.parametrize(
    "mode,scale,layer",
    [
        ("sn", 1.0, nn.Conv2d(5, 4, 3)),
        ("ssn", 1.3, nn.Conv2d(5, 4, 3)),
        ("sn", 1.0, nn.Linear(7, 3)),
        ("bsn", 1.0, nn.Conv2d(5, 4, 3)),
        ("bssn", 1.2, nn.Conv2d(4, 6, 2)),
    ],
)
def test_hand_written_backward_is_the_exact_gradient(mode, scale, layer) -> None:
    """sn/bsn divide in an autograd Function with a hand-written backward: it must be the
    Jacobian of its forward (gradcheck, float64), which is autograd's scale * w / sigma(w)
    with u, v held fixed."""
    layer = bssn.apply(copy.deepcopy(layer).double(), mode, scale=scale)
    norm = layer.parametrizations.weight[0].eval()  # eval: the forward never advances
    weight = layer.parametrizations.weight.original.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(norm, (weight,))

    def by_autograd(w):
        terms = [norm.w1] + ([norm.w2] if mode in ("bsn", "bssn") else [])
        sigmas = [
            torch.vdot(p._u, (w.flatten(1) if p.dim == 0 else w.transpose(0, 1).flatten(1)) @ p._v)
            for p in terms
        ]
        return w * scale / (sum(sigmas) / len(sigmas))

    g = torch.randn_like(weight)
    ours = torch.autograd.grad((norm(weight) * g).sum(), weight)[0]
    expected = torch.autograd.grad((by_autograd(weight) * g).sum(), weight)[0]
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "c_in,c_out,k,stride,size,alpha",
    [(3, 4, 3, 1, 6, 3.0), (4, 5, 4, 2, 8, 2.0), (2, 3, 3, 2, 7, 2.0)],
)
def test_snconv_sigma_matches_svd_of_dense_operator(
    c_in: int, c_out: int, k: int, stride: int, size: int, alpha: float
) -> None:
    conv = nn.Conv2d(c_in, c_out, k, stride, 1, bias=False)
    dense = dense_conv_matrix(conv, size, size)
    sigma_t = torch.linalg.svdvals(dense)[0].item()
    sigma_w1 = exact_sigma(conv.weight.detach().flatten(1))
    assert bssn.alpha((k, k), (stride, stride)) == alpha
    # Section 4: sigma(W1) <= sigma(T_w) <= alpha sigma(W1).
    assert sigma_w1 <= sigma_t * (1 + 1e-9) and sigma_t <= alpha * sigma_w1
    bssn.apply(conv, "snconv", input_size=(c_in, size, size))
    converge(conv, 1000)
    assert bssn.sigmas(conv)[""]["sigma"] == pytest.approx(sigma_t, rel=1e-4)
    # The forward operator has spectral norm 1.
    normalized = nn.Conv2d(c_in, c_out, k, stride, 1, bias=False)
    normalized.weight.data = conv.weight.detach()
    assert torch.linalg.svdvals(dense_conv_matrix(normalized, size, size))[
        0
    ].item() == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize(
    "size,k,stride,padding", [(7, 3, 2, 1), (8, 4, 2, 1), (9, 3, 1, 0), (6, 5, 3, 2)]
)
def test_snconv_adjoint_is_exact(size: int, k: int, stride: int, padding: int) -> None:
    """<T x, y> = <x, T* y>: conv_transpose2d with the computed output_padding is T's adjoint."""
    conv = nn.Conv2d(3, 4, k, stride, padding, bias=False)
    norm = ConvSpectralNorm(conv)
    norm.initialize(conv.weight.detach(), (size, size))
    x = torch.randn(1, 3, size, size, dtype=torch.float64)
    w = conv.weight.detach().double()
    tx = norm._conv(x, w)
    y = torch.randn_like(tx)
    assert torch.sum(tx * y).item() == pytest.approx(
        torch.sum(x * norm._conv_adjoint(y, w)).item(), rel=1e-10
    )


@pytest.mark.parametrize("c_out,c_in,k,stride", CIFAR_D_CONVS[:4])
def test_bsn_is_mean_of_the_two_reshapes(c_out: int, c_in: int, k: int, stride: int) -> None:
    conv = nn.Conv2d(c_in, c_out, k, stride, 1)
    w = conv.weight.detach().clone()
    s1 = exact_sigma(w.flatten(1))
    s2 = exact_sigma(w.transpose(0, 1).flatten(1))  # [c_in, c_out*k*k]
    bssn.apply(conv, "bsn")
    converge(conv)
    got = bssn.sigmas(conv)[""]
    assert got["sigma_w1"] == pytest.approx(s1, rel=1e-3)
    assert got["sigma_w2"] == pytest.approx(s2, rel=1e-3)
    assert got["sigma"] == pytest.approx((s1 + s2) / 2, rel=1e-3)
    torch.testing.assert_close(conv.weight, w / ((s1 + s2) / 2), rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("base,scaled", [("sn", "ssn"), ("bsn", "bssn")])
def test_scale_multiplies_the_normalized_weight(base: str, scaled: str) -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.Flatten(), nn.Linear(8 * 4 * 4, 1))
    a = bssn.apply(copy.deepcopy(net), base)
    b = bssn.apply(copy.deepcopy(net), scaled, scale=1.7)
    b.load_state_dict(a.state_dict())  # same vectors
    a.eval(), b.eval()
    for la, lb in ((a[0], b[0]), (a[2], b[2])):  # every layer, the last linear included
        torch.testing.assert_close(lb.weight, 1.7 * la.weight)


@pytest.mark.parametrize("c_out,c_in,k,stride", CIFAR_D_CONVS + [(1, 8192, 1, 1)])
def test_thm2_sn_variance_at_most_lecun(c_out: int, c_in: int, k: int, stride: int) -> None:
    """mean (A_ij / sigma(A))^2 <= 1 / max(m, n), exactly (||A||_F^2 <= rank sigma^2)."""
    a = torch.randn(c_out, c_in * k * k, dtype=torch.float64)
    variance = (a / exact_sigma(a)).square().mean().item()
    assert variance <= (1 + 1e-12) / max(a.shape)  # equality for rank-1 matrices
    # The same for the weight `sn` produces (converged), within the estimate's accuracy.
    conv = nn.Conv2d(c_in, c_out, k, stride, 1)
    bssn.apply(conv, "sn")
    converge(conv)
    assert conv.weight.detach().double().square().mean().item() <= (1 + 1e-3) / max(
        conv.weight[0].numel(), c_out
    )


@pytest.mark.parametrize("c_out,c_in,k,stride", CIFAR_D_CONVS + [(3, 64, 3, 1), (256, 2, 1, 1)])
def test_thm3_bsn_variance_bound(c_out: int, c_in: int, k: int, stride: int) -> None:
    w = torch.randn(c_out, c_in, k, k, dtype=torch.float64)
    s1, s2 = exact_sigma(w.flatten(1)), exact_sigma(w.transpose(0, 1).flatten(1))
    r1, r2, n = min(c_out, c_in * k * k), min(c_in, c_out * k * k), w.numel()
    bound = 4 / (n * (1 / math.sqrt(r1) + 1 / math.sqrt(r2)) ** 2)
    assert (w / ((s1 + s2) / 2)).square().mean().item() <= bound
    if (
        r1 == c_out and r2 == c_in
    ):  # the usual case: Xavier-like 4 / (k^2 (sqrt(c_in)+sqrt(c_out))^2)
        assert bound == pytest.approx(4 / (k * k * (math.sqrt(c_in) + math.sqrt(c_out)) ** 2))
    conv = nn.Conv2d(c_in, c_out, k, stride, 1)
    conv.weight.data = w.float()
    bssn.apply(conv, "bsn")
    converge(conv)
    assert conv.weight.detach().double().square().mean().item() <= bound * (1 + 1e-3)


def _layer_gradient_norms(net: nn.Sequential, x: torch.Tensor) -> list[float]:
    """||dD/dT_t||_F = ||dD/d(output_t)|| * ||input_t|| for every conv/linear layer t.

    The gradient w.r.t. the layer as a linear operator T_t (for a linear layer, its
    weight matrix) is the outer product of these two vectors.
    """
    inputs, outputs = [], []
    hooks = []
    for layer in net:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):

            def hook(mod, args, out):
                inputs.append(args[0].detach())
                out.retain_grad()
                outputs.append(out)

            hooks.append(layer.register_forward_hook(hook))
    net(x).sum().backward()
    for h in hooks:
        h.remove()
    return [i.norm().item() * o.grad.norm().item() for i, o in zip(inputs, outputs, strict=True)]


@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_prop1_gradient_bound_linear_net(slope: float) -> None:
    """Prop. 1: with ||W_i||_sp <= 1, every layer's gradient norm is <= ||x||."""
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Linear(30, 60, bias=False),
        nn.LeakyReLU(slope),
        nn.Linear(60, 40, bias=False),
        nn.LeakyReLU(slope),
        nn.Linear(40, 20, bias=False),
        nn.LeakyReLU(slope),
        nn.Linear(20, 1, bias=False),
    )
    bssn.apply(net, "sn")
    converge(net, 2000)
    net.eval()
    for _ in range(5):
        x = torch.randn(1, 30) * 3
        norms = _layer_gradient_norms(net, x)
        # The norms above are those of autograd's gradient w.r.t. the normalized weights.
        with parametrize.cached():
            weights = [layer.weight for layer in net if isinstance(layer, nn.Linear)]
            for w in weights:
                w.retain_grad()
            net(x).sum().backward()
        for w, n in zip(weights, norms, strict=True):
            assert w.grad.norm().item() == pytest.approx(n, rel=1e-5)
        bound = x.norm().item() * (1 + 1e-4)
        assert max(norms) <= bound
        assert math.sqrt(sum(n * n for n in norms)) <= math.sqrt(len(norms)) * bound


def test_prop1_gradient_bound_conv_net_needs_the_operator_norm() -> None:
    """Convs: the bound holds with snconv; with sn only up to the alpha_i factors (fact 5)."""
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, 1, 1, bias=False),
        nn.LeakyReLU(0.1),
        nn.Conv2d(8, 8, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.1),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 1, bias=False),
    )
    alphas = [3.0, 2.0, 1.0]
    sn_net = bssn.apply(copy.deepcopy(net), "sn")
    conv_net = bssn.apply(copy.deepcopy(net), "snconv", input_size=(3, 8, 8))
    converge(sn_net, 2000)
    converge(conv_net, 2000)
    sn_net.eval(), conv_net.eval()
    for _ in range(5):
        x = torch.randn(1, 3, 8, 8)
        bound = x.norm().item() * (1 + 1e-3)
        assert max(_layer_gradient_norms(conv_net, x)) <= bound
        for t, g in enumerate(_layer_gradient_norms(sn_net, x)):
            assert g <= bound * math.prod(a for i, a in enumerate(alphas) if i != t)
