"""train.compile: the compiled D and G steps train as the eager loop does (CPU)."""

from __future__ import annotations

import pytest
import torch

import bssn
from harness.training.loop import compile_steps, discriminator_update, generator_update
from models import build_models

STEPS = 20


def _train(compiled: bool) -> tuple[torch.nn.Module, torch.nn.Module, list[float]]:
    torch.manual_seed(0)
    g, d = build_models("cnn", 16, 3)
    bssn.apply(d, "bssn", 1.2)
    opt_g = torch.optim.Adam(g.parameters(), 1e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 1e-4, betas=(0.5, 0.999))
    g_step, d_step, d_for_g = compile_steps(g, d, d, "default") if compiled else (g, d, d)
    data = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(STEPS):
        real = torch.rand(8, 3, 16, 16, generator=data) * 2 - 1
        z, z_g = torch.randn(8, 128, generator=data), torch.randn(8, 128, generator=data)
        out = discriminator_update(d_step, d, g_step, opt_d, real, z)
        losses.append(out["d_loss"].item())
        losses.append(generator_update(d_for_g, g_step, opt_g, z_g).item())
    return g, d, losses


@pytest.mark.slow
def test_compiled_loop_matches_eager_over_20_steps() -> None:
    torch._dynamo.reset()
    g_eager, d_eager, losses_eager = _train(compiled=False)
    g_comp, d_comp, losses_comp = _train(compiled=True)
    torch.testing.assert_close(losses_comp, losses_eager, rtol=1e-3, atol=1e-4)
    for eager, comp in ((g_eager, g_comp), (d_eager, d_comp)):
        a, b = eager.state_dict(), comp.state_dict()
        assert a.keys() == b.keys()
        for key in a:  # weights, batch-norm statistics and the u/v power-iteration vectors
            torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-4, msg=key)
