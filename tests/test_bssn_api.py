"""The behaviour of `bssn` as a weight reparametrization: buffers, modes, errors, DDP."""

from __future__ import annotations

import copy
import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import bssn


def small_d(bias: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 1, 1, bias=bias),
        nn.LeakyReLU(0.1),
        nn.Conv2d(8, 16, 4, 2, 1, bias=bias),
        nn.LeakyReLU(0.1),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 1, bias=bias),
    )


def vectors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.clone() for k, v in module.state_dict().items() if k.rsplit(".", 1)[-1] in ("_u", "_v")
    }


def all_modes_kwargs() -> list[tuple[str, dict]]:
    out = []
    for mode in bssn.MODES:
        kw: dict = {"scale": 1.3} if mode in bssn.SCALED_MODES else {}
        if mode == "snconv":
            kw["input_size"] = (3, 8, 8)
        out.append((mode, kw))
    return out


@pytest.mark.parametrize("mode,kw", all_modes_kwargs())
def test_every_mode_trains_with_several_d_calls_and_gradient_penalty(mode: str, kw: dict) -> None:
    """D(real), D(fake) and a create_graph penalty in one backward: no in-place errors."""
    d = bssn.apply(small_d(), mode, **kw)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3)
    for auto in (True, False):  # torch-like auto advance, and the paper's step rule
        real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
        ctx = bssn.discriminator_step(d) if not auto else torch.enable_grad()
        with ctx:
            eps = torch.rand(4, 1, 1, 1)
            mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
            grad = torch.autograd.grad(d(mix).sum(), mix, create_graph=True)[0]
            loss = (
                d(real).mean()
                - d(fake).mean()
                + 10 * (grad.flatten(1).norm(dim=1) - 1).square().mean()
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert all(torch.isfinite(p.grad).all() for p in d.parameters() if p.grad is not None)


@pytest.mark.parametrize("mode,kw", [m for m in all_modes_kwargs() if m[0] in bssn.SPECTRAL_MODES])
def test_advance_rules(mode: str, kw: dict) -> None:
    d = bssn.apply(small_d(), mode, **kw)
    x = torch.randn(2, 3, 8, 8)
    d.eval()
    before = vectors(d)
    for _ in range(3):
        d(x)
    assert all(torch.equal(before[k], v) for k, v in vectors(d).items()), "eval mode advanced"
    d.train()
    with bssn.frozen(d):
        d(x), d(x)
    assert all(torch.equal(before[k], v) for k, v in vectors(d).items()), "frozen advanced"
    # discriminator_step advances exactly once however many passes run inside it.
    once = copy.deepcopy(d)
    bssn.advance(once)
    with bssn.discriminator_step(d):
        d(x), d(x), d(x)
    assert all(torch.equal(vectors(once)[k], v) for k, v in vectors(d).items())
    assert any(not torch.equal(before[k], v) for k, v in vectors(d).items())
    # Auto mode: every training forward advances once (torch's behaviour).
    twice = copy.deepcopy(d)
    bssn.advance(twice), bssn.advance(twice)
    d(x), d(x)
    assert all(torch.equal(vectors(twice)[k], v) for k, v in vectors(d).items())


@pytest.mark.parametrize("mode,kw", all_modes_kwargs())
def test_state_dict_round_trip(mode: str, kw: dict) -> None:
    torch.manual_seed(1)
    src = bssn.apply(small_d(), mode, **kw)
    opt = torch.optim.SGD(src.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        src(torch.randn(2, 3, 8, 8)).sum().backward()
        opt.step()
    torch.manual_seed(2)  # a different init and different vectors
    kw_fresh = {
        k: v for k, v in kw.items() if k != "input_size"
    }  # snconv: shapes come from the file
    dst = bssn.apply(small_d(), mode, **kw_fresh)
    dst.load_state_dict(src.state_dict())
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    x = torch.randn(2, 3, 8, 8)
    src.eval(), dst.eval()
    assert torch.equal(src(x), dst(x))
    src.train(), dst.train()
    assert torch.equal(src(x), dst(x))  # the next advance is identical too


def test_state_dict_keys_hold_the_vectors() -> None:
    keys = set(bssn.apply(small_d(), "bssn", scale=1.2).state_dict())
    assert "0.parametrizations.weight.original" in keys
    assert {"0.parametrizations.weight.0.w1._u", "0.parametrizations.weight.0.w2._v"} <= keys
    assert "5.parametrizations.weight.0.w1._u" in keys  # the linear layer: plain SN vectors


def test_assigning_the_weight_stores_it_as_torch_spectral_norm_does() -> None:
    ours = bssn.apply(nn.Linear(5, 4), "sn")
    torch.manual_seed(0)
    theirs = nn.utils.parametrizations.spectral_norm(nn.Linear(5, 4))
    ours.load_state_dict(
        {k.replace("weight.0._", "weight.0.w1._"): v for k, v in theirs.state_dict().items()}
    )
    t = torch.randn(4, 5)
    ours.weight = t
    theirs.weight = t
    assert torch.equal(ours.parametrizations.weight.original, t)
    assert torch.equal(theirs.parametrizations.weight.original, t)
    ours.eval(), theirs.eval()
    # Both divide by u^T t v with their (not yet advanced) vectors.
    u, v = ours.parametrizations.weight[0].w1._u, ours.parametrizations.weight[0].w1._v
    torch.testing.assert_close(ours.weight, t / (u @ t @ v))
    torch.testing.assert_close(ours.weight, theirs.weight)
    for layer, mode in [(nn.Conv2d(3, 8, 3), "bssn"), (nn.Conv2d(3, 8, 3), "sn_diff_gamma")]:
        layer = bssn.apply(layer, mode, **({"scale": 1.2} if mode == "bssn" else {}))
        t = torch.randn(8, 3, 3, 3)
        if mode == "sn_diff_gamma":
            with torch.no_grad():
                layer.parametrizations.weight[1].gamma.fill_(2.0)
        layer.weight = t
        stored = layer.parametrizations.weight.original
        torch.testing.assert_close(stored, t if mode == "bssn" else t / 2.0)


@pytest.mark.parametrize("mode", ["sn_same_gamma", "sn_diff_gamma"])
def test_gamma_scales_weight_and_bias_and_learns(mode: str) -> None:
    d = bssn.apply(small_d(), mode)
    gammas = {id(p): p for n, p in d.named_parameters() if n.endswith("gamma")}
    assert len(gammas) == (1 if mode == "sn_same_gamma" else 3)
    d.eval()
    conv = d[0]
    w1, b1 = conv.weight.detach().clone(), conv.bias.detach().clone()
    with torch.no_grad():
        for g in gammas.values():
            g.fill_(2.5)
    torch.testing.assert_close(conv.weight, 2.5 * w1)
    torch.testing.assert_close(conv.bias, 2.5 * b1)
    assert torch.equal(conv.parametrizations.bias.original, b1)
    d(torch.randn(2, 3, 8, 8)).sum().backward()
    assert all(g.grad is not None and g.grad.abs() > 0 for g in gammas.values())
    assert set(bssn.sigmas(d)["2"]) == {"sigma", "gamma"}


@pytest.mark.parametrize("mode,factor", [("lecun", 1.0), ("xavier", None), ("kaiming", 2.0 / 1.01)])
def test_scaled_init_variance(mode: str, factor: float | None) -> None:
    conv = nn.Conv2d(256, 512, 3)
    bssn.apply(nn.Sequential(conv), mode, scale=1.5, negative_slope=0.1)
    fan_in, fan_out = 256 * 9, 512 * 9
    v = factor / fan_in if factor else 2 / (fan_in + fan_out)
    assert conv.weight.var().item() == pytest.approx(1.5**2 * v, rel=0.02)
    assert not hasattr(conv, "parametrizations")


def test_bad_input_names_the_value_and_the_allowed_set() -> None:
    with pytest.raises(ValueError, match=r"'bnss'.*allowed: none, sn, snconv, ssn, bsn, bssn"):
        bssn.apply(small_d(), "bnss")
    for bad in (0, -1.0, math.nan, math.inf, "1.2", True):
        with pytest.raises(ValueError, match="positive finite"):
            bssn.apply(small_d(), "bssn", scale=bad)
    with pytest.raises(ValueError, match=r"'sn' has no scale.*ssn"):
        bssn.apply(small_d(), "sn", scale=1.2)
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match="n_power_iterations"):
            bssn.apply(small_d(), "sn", n_power_iterations=bad)
    d = bssn.apply(small_d(), "sn")
    with pytest.raises(ValueError, match="already called.*'sn'"):
        bssn.apply(d, "bssn", scale=1.2)
    torch_sn = torch.nn.utils.parametrizations.spectral_norm(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="already has a weight parametrization"):
        bssn.apply(nn.Sequential(torch_sn), "sn")
    with pytest.raises(ValueError, match="no nn.Conv2d or nn.Linear"):
        bssn.apply(nn.Sequential(nn.ReLU()), "sn")
    with pytest.raises(ValueError, match="input_size"):
        bssn.apply(small_d(), "snconv", input_size=(8, 8.0))


def test_snconv_needs_an_input_size_and_keeps_it() -> None:
    d = bssn.apply(small_d(), "snconv")
    with pytest.raises(RuntimeError, match="input_size=.*or run one forward pass"):
        bssn.sigmas(d)
    bssn.advance(d)  # skipped, not an error: the first forward sets the layers up
    d(torch.randn(2, 3, 8, 8))
    assert set(bssn.sigmas(d)) == {"0", "2", "5"}
    with pytest.raises(ValueError, match="set up for 8x8 inputs and got 16x16"):
        d[0](torch.randn(1, 3, 16, 16))
    lazy_then_eager = bssn.apply(small_d(), "snconv", input_size=(3, 8, 8))
    assert lazy_then_eager[2].parametrizations.weight[0].input_size == (8, 8)


def test_deepcopy_is_independent() -> None:
    d = bssn.apply(small_d(), "snconv", input_size=(3, 8, 8))
    e = copy.deepcopy(d)
    e(torch.randn(1, 3, 8, 8))
    assert not torch.equal(
        vectors(d)["0.parametrizations.weight.0._u"], vectors(e)["0.parametrizations.weight.0._u"]
    )


@pytest.mark.parametrize("mode,scale", [("sn", 1.0), ("bssn", 1.2)])
def test_torch_compile_matches_eager(mode: str, scale: float) -> None:
    # aot_eager traces through dynamo and functionalizes the buffer updates, which is
    # where a reparametrization breaks; inductor's codegen is exercised by the benchmark.
    # Both autograd Functions (sn's and bsn's hand-written backwards) go through it.
    eager = bssn.apply(small_d(), mode, scale=scale)
    compiled_src = copy.deepcopy(eager)
    compiled = torch.compile(compiled_src, backend="aot_eager", fullgraph=True)
    x = torch.randn(4, 3, 8, 8)
    for _ in range(2):
        out_e, out_c = eager(x), compiled(x)  # auto advance inside the compiled graph
        torch.testing.assert_close(out_c, out_e)
        out_e.sum().backward()
        out_c.sum().backward()
    torch.testing.assert_close(vectors(compiled_src), vectors(eager))
    for (name, p_c), p_e in zip(compiled_src.named_parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(p_c.grad, p_e.grad, msg=name)
    assert set(bssn.sigmas(compiled)) == set(bssn.sigmas(eager))
    bssn.advance(eager)
    with bssn.frozen(eager):
        expected = eager(x)
    with bssn.discriminator_step(compiled):
        torch.testing.assert_close(compiled(x), expected)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, broadcast: bool, out: dict) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)  # same init on every rank
    d = bssn.apply(small_d(), "bssn", scale=1.2)
    ddp = nn.parallel.DistributedDataParallel(d, broadcast_buffers=broadcast)
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-2)
    torch.manual_seed(100 + rank)  # each rank its own data
    for _ in range(3):
        with bssn.discriminator_step(ddp):
            loss = ddp(torch.randn(4, 3, 8, 8)).mean() - ddp(torch.randn(4, 3, 8, 8)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out[rank] = {k: v.clone() for k, v in d.state_dict().items()}
    dist.destroy_process_group()


@pytest.mark.parametrize("broadcast_buffers", [False, True])
def test_ddp_keeps_vectors_identical_across_ranks(broadcast_buffers: bool) -> None:
    """Two CPU processes (gloo), D called twice per step: same weights and u, v on both."""
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_ddp_worker, args=(2, _free_port(), broadcast_buffers, out), nprocs=2)
        r0, r1 = out[0], out[1]
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k


@pytest.mark.parametrize("mode", ["sn", "bsn", "snconv"])
def test_init_power_iterations_zero_keeps_the_random_start(mode: str) -> None:
    """The authors' start (u drawn once, no warm-up) vs torch's 15 warm-up steps (default)."""
    torch.manual_seed(3)
    cold = bssn.apply(small_d(), mode, init_power_iterations=0, input_size=(3, 8, 8))
    torch.manual_seed(3)
    warm = bssn.apply(small_d(), mode, input_size=(3, 8, 8))
    # The same draws, so only the warm-up differs (a 1-vector is +-1 either way).
    for (name, a), (_, b) in zip(cold.named_buffers(), warm.named_buffers(), strict=True):
        assert a.shape == b.shape and (a.numel() == 1 or not torch.equal(a, b)), name
    layer = cold[0].parametrizations.weight[0]
    v = layer._v if mode == "snconv" else layer.w1._v
    assert torch.isclose(v.norm(), torch.tensor(1.0))
    if mode == "snconv":
        assert not layer._u.any()  # filled by the first step only
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="init_power_iterations must be an integer >= 0"):
            bssn.apply(small_d(), mode, init_power_iterations=bad)


def test_init_power_iterations_zero_stores_the_drawn_vectors() -> None:
    torch.manual_seed(5)
    d = small_d()
    expected = []
    for layer in (d[0], d[2], d[5]):  # u then v, layer by layer, as bssn.apply draws them
        h, w = layer.weight.flatten(1).shape
        u = torch.nn.functional.normalize(torch.empty(h).normal_(0, 1), dim=0, eps=1e-12)
        v = torch.nn.functional.normalize(torch.empty(w).normal_(0, 1), dim=0, eps=1e-12)
        expected += [u, v]
    torch.manual_seed(5)
    cold = bssn.apply(small_d(), "sn", init_power_iterations=0)
    got = [t for n, t in cold.named_buffers() if n.endswith(("_u", "_v"))]
    assert len(got) == 6 and all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
