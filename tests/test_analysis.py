"""bssn.analysis against hand-computed cases; make_figures and check_theorems end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from test_data import write_mnist
from test_train import compose_cfg, run
from torch import nn

import bssn
from bssn import analysis
from bssn.analysis import measure
from harness.results import figures as make_figures
from harness.results import theorems as check_theorems
from harness.training.config import validate

ROOT = Path(__file__).resolve().parents[1]


class Chain(nn.Module):
    """D(x) = l_L(a(... a(l_1(x)))) with leaky ReLU a, as Prop. 1 assumes."""

    def __init__(self, *layers: nn.Module, negative_slope: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            if i:
                x = F.leaky_relu(x, self.negative_slope)
                if isinstance(layer, nn.Linear):
                    x = x.flatten(1)
            x = layer(x)
        return x.squeeze(1)


def linear(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    w = torch.tensor(weight, dtype=torch.float64)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, dtype=torch.float64)
    layer.weight.data = w
    if bias is not None:
        layer.bias.data = torch.tensor(bias, dtype=torch.float64)
    return layer


# --- theory ------------------------------------------------------------------------------


def test_thm2_bound() -> None:
    assert analysis.thm2_bound(3, 5) == 1 / 5
    with pytest.raises(ValueError, match="positive"):
        analysis.thm2_bound(0, 4)


def test_thm3_bound_by_hand() -> None:
    # c_out=8, c_in=2, 3x3: r1 = 8, r2 = 2, N = 144
    # -> 4 / (144 * (1/sqrt(8) + 1/sqrt(2))^2) = 4/162.
    assert analysis.thm3_bound(8, 2, 3, 3) == pytest.approx(4 / 162)
    # The usual case's Xavier-like form 4 / (k^2 (sqrt(c_in) + sqrt(c_out))^2), the same number.
    assert 4 / (9 * (math.sqrt(2) + math.sqrt(8)) ** 2) == pytest.approx(4 / 162)
    assert analysis.thm3_bound(4, 1, 1, 1) == analysis.thm2_bound(4, 1) == 0.25  # 1x1: Thm. 2


def test_prop1_bounds_by_hand() -> None:
    # No biases: ||x|| prod_{i != t} sigma_i.
    assert analysis.prop1_bounds(2.0, [3.0, 0.5, 4.0], [0, 0, 0], [1, 1, 1]) == [4.0, 24.0, 3.0]
    # Bias 1 after layer 1: layer 2's input has norm <= 2 * 1 + 1; alpha multiplies its layer.
    assert analysis.prop1_bounds(1.0, [2.0, 3.0], [1.0, 0.0], [2.0, 1.0]) == [6.0, 3.0]


# --- measure, on hand-computed networks ---------------------------------------------------


def test_spectral_norm_and_variance_by_hand() -> None:
    assert measure.spectral_norm(torch.diag(torch.tensor([3.0, -5.0, 1.0]))) == pytest.approx(5.0)
    assert measure.spectral_norm(torch.tensor([3.0, 4.0]).view(2, 1, 1, 1)) == pytest.approx(
        5.0
    )  # W1 = [[3], [4]]
    assert measure.variance(torch.tensor([1.0, -1.0, 3.0, -3.0])) == pytest.approx(5.0)


def test_two_layer_relu_net_gradients_and_bounds_by_hand() -> None:
    """D(x) = w2 relu(W1 x), W1 = diag(2, 1), w2 = [3, 0.5], x = [1, 1].

    dD/dW1 = (w2 * relu'(W1 x)) x^T = [[3, 3], [0.5, 0.5]]: norm sqrt(18.5), which equals its
    bound ||x|| sigma(w2) = sqrt(2) sqrt(9.25) (rank one, aligned). dD/dw2 = relu(W1 x) =
    [2, 1]: norm sqrt(5) <= ||x|| sigma(W1) = 2 sqrt(2).
    """
    net = Chain(linear([[2, 0], [0, 1]]), linear([[3, 0.5]]))
    out = analysis.log_scalars(net, torch.ones(1, 2, dtype=torch.float64))
    assert out["prop1_grad/layers.0"] == pytest.approx(math.sqrt(18.5))
    assert out["prop1_bound/layers.0"] == pytest.approx(math.sqrt(18.5))
    assert out["prop1_grad/layers.1"] == pytest.approx(math.sqrt(5))
    assert out["prop1_bound/layers.1"] == pytest.approx(2 * math.sqrt(2))
    assert out["prop1_input_norm"] == pytest.approx(math.sqrt(2))
    assert out["spectral_norm/layers.0"] == out["operator_norm/layers.0"] == pytest.approx(2.0)
    assert out["spectral_norm/layers.1"] == pytest.approx(math.sqrt(9.25))
    assert out["variance/layers.0"] == pytest.approx(0.6875)  # entries 2, 0, 0, 1
    # Not normalized, and no convs: no variance bounds and no sigma ratios.
    assert not any(k.startswith(("variance_bound", "sigma_ratio")) for k in out)


def test_biases_enter_the_prop1_bound() -> None:
    """As above with b1 = [1, -3]: W1 x + b1 = [3, -2], relu -> [3, 0].

    dD/dW1 = [[3, 3], [0, 0]] (norm sqrt(18)); dD/dw2 = [3, 0] (norm 3). Layer 2's input
    norm is at most sigma(W1) ||x|| + ||b1|| = 2 sqrt(2) + sqrt(10).
    """
    net = Chain(linear([[2, 0], [0, 1]], [1, -3]), linear([[3, 0.5]], [0.5]))
    out = analysis.log_scalars(net, torch.ones(1, 2, dtype=torch.float64))
    assert out["prop1_grad/layers.0"] == pytest.approx(math.sqrt(18))
    assert out["prop1_bound/layers.0"] == pytest.approx(math.sqrt(18.5))
    assert out["prop1_grad/layers.1"] == pytest.approx(3.0)
    assert out["prop1_bound/layers.1"] == pytest.approx(2 * math.sqrt(2) + math.sqrt(10))


def test_conv_kernel_gradient_needs_alpha() -> None:
    """A 2x2 all-ones conv on a 3x3 all-ones image, then a linear layer of ones.

    The kernel gradient sums each tap over the 4 output positions: every entry is 4, norm
    8 > ||x|| sigma(w_linear) = 3 * 2 = 6, so the bound needs alpha = 2: 12. T_w T_w^T has
    rows [4, 2, 2, 1]-like with row sums 9, so sigma(T_w) = 3 while sigma(W1) = 2.
    """
    conv = nn.Conv2d(1, 1, 2, bias=False, dtype=torch.float64)
    conv.weight.data.fill_(1.0)
    net = Chain(conv, linear([[1, 1, 1, 1]]), negative_slope=0.1)
    out = analysis.log_scalars(net, torch.ones(1, 1, 3, 3, dtype=torch.float64))
    assert out["prop1_grad/layers.0"] == pytest.approx(8.0)
    assert out["prop1_bound/layers.0"] == pytest.approx(12.0)
    assert out["spectral_norm/layers.0"] == pytest.approx(2.0)
    assert out["operator_norm/layers.0"] == pytest.approx(3.0, rel=1e-6)
    assert out["sigma_ratio/layers.0"] == pytest.approx(1.5, rel=1e-6)
    assert out["sigma_ratio_bound/layers.0"] == 2.0
    assert out["prop1_grad/layers.1"] == pytest.approx(8.0)  # relu(conv(x)) = [4, 4, 4, 4]
    assert out["prop1_bound/layers.1"] == pytest.approx(9.0, rel=1e-6)  # ||x|| sigma(T_w)


@pytest.mark.parametrize("mode", ["none", "sn", "snconv"])
def test_prop1_bound_and_sigma_ratio_bounds_hold_on_a_random_conv_net(mode: str) -> None:
    """The paper's CNN in small: 3x3 s1 and 4x4 s2 convs, leaky ReLU 0.1, biases, a linear head."""
    net = Chain(
        nn.Conv2d(3, 8, 3, 1, 1),
        nn.Conv2d(8, 8, 4, 2, 1),
        nn.Conv2d(8, 16, 3, 1, 1),
        nn.Linear(16 * 4 * 4, 1),
        negative_slope=0.1,
    )
    for layer in net.layers:
        nn.init.normal_(layer.bias, std=0.1)
    bssn.apply(net, mode, input_size=(3, 8, 8))
    out = analysis.log_scalars(net, torch.randn(4, 3, 8, 8))
    grads = [k for k in out if k.startswith("prop1_grad/")]
    assert len(grads) == 4 and all(out[k] <= out[k.replace("grad", "bound")] for k in grads)
    assert [out[f"sigma_ratio_bound/layers.{i}"] for i in range(3)] == [3.0, 2.0, 3.0]
    for i in range(3):  # every layer here has output positions whose window is inside the input
        assert 1 - 1e-2 <= out[f"sigma_ratio/layers.{i}"] <= out[f"sigma_ratio_bound/layers.{i}"]
    if mode == "snconv":  # snconv normalizes the operator itself
        assert all(
            out[f"operator_norm/layers.{i}"] == pytest.approx(1.0, rel=2e-2) for i in range(3)
        )


def test_variance_bounds_follow_scale_and_mode() -> None:
    net = Chain(nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8 * 4 * 4, 1))
    bssn.apply(net, "bssn", scale=1.5)
    out = analysis.log_scalars(net, torch.randn(2, 3, 4, 4))
    assert out["variance_bound_thm2/layers.0"] == pytest.approx(1.5**2 / 27)  # W1: 8 x 27
    assert out["variance_bound_thm3/layers.0"] == pytest.approx(
        1.5**2 * analysis.thm3_bound(8, 3, 3, 3)
    )
    assert out["variance_bound_thm2/layers.1"] == pytest.approx(1.5**2 / 128)
    assert "variance_bound_thm3/layers.1" not in out  # Thm. 3 is about conv kernels
    assert out["variance/layers.1"] <= out["variance_bound_thm2/layers.1"] * (1 + 1e-3)


def test_not_a_chain_warns_and_skips_prop1() -> None:
    class Residual(nn.Module):
        negative_slope = 0.0

        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(F.relu(self.a(x)) + x).squeeze(1)

    with pytest.warns(UserWarning, match="Prop. 1 scalars not logged: layer 'b' does not read"):
        out = analysis.log_scalars(Residual(), torch.randn(3, 4))
    assert "variance/a" in out and not any(k.startswith("prop1") for k in out)


def test_log_scalars_has_no_side_effects() -> None:
    """No power-iteration step, no .grad, and the global RNG untouched (training is unchanged)."""
    net = Chain(nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8 * 4 * 4, 1), negative_slope=0.1)
    bssn.apply(net, "bsn")
    buffers = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(2, 3, 4, 4)
    rng = torch.get_rng_state()
    analysis.log_scalars(net, x)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(buffers[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


# --- Thm. 1 option --------------------------------------------------------------------------


def test_random_layer_scales_keep_the_geometric_mean() -> None:
    scales = analysis.random_layer_scales(3, 2.0, 0.5, seed=1)
    assert math.prod(scales) == pytest.approx(8.0)
    assert scales == analysis.random_layer_scales(3, 2.0, 0.5, seed=1)
    assert scales != analysis.random_layer_scales(3, 2.0, 0.5, seed=2)
    assert analysis.random_layer_scales(3, 2.0, 0.0, seed=1) == pytest.approx([2.0, 2.0, 2.0])


def test_set_layer_scales_sets_each_spectral_norm() -> None:
    net = Chain(linear([[2, 0], [0, 1]]), linear([[1, 0], [0, 3]]), linear([[3, 0.5]]))
    bssn.apply(net, "sn")
    assert analysis.set_layer_scales(net, [0.5, 4.0, 0.5]) == {
        "layers.0": 0.5,
        "layers.1": 4.0,
        "layers.2": 0.5,
    }
    for _, layer, normalizer in bssn.normalized_layers(net):  # converge the estimates
        for _ in range(50):
            normalizer.advance(layer.parametrizations.weight.original)
    out = analysis.log_scalars(net, torch.ones(1, 2, dtype=torch.float64))
    assert [out[f"spectral_norm/layers.{i}"] for i in range(3)] == pytest.approx([0.5, 4.0, 0.5])
    assert out["variance_bound_thm2/layers.1"] == pytest.approx(16 / 2)
    with pytest.raises(ValueError, match="3 normalized layers"):
        analysis.set_layer_scales(net, [1.0, 1.0])
    with pytest.raises(ValueError, match="one of sn, snconv, bsn; got 'ssn'"):
        analysis.set_layer_scales(bssn.apply(Chain(nn.Linear(2, 1)), "ssn", scale=2.0), [1.0])


def test_config_validates_layer_scales(tmp_path: Path) -> None:
    validate(compose_cfg(tmp_path, "norm=sn", "norm.layer_scales_geomean=1.75"))
    with pytest.raises(ValueError, match=r"norm.mode \(with norm.layer_scales_geomean\)='bssn'"):
        validate(compose_cfg(tmp_path, "norm=bssn", "norm.layer_scales_geomean=1.0"))
    with pytest.raises(ValueError, match="norm.layer_scales_geomean=-1.0 must be > 0"):
        validate(compose_cfg(tmp_path, "norm=sn", "norm.layer_scales_geomean=-1.0"))


# --- scripts --------------------------------------------------------------------------------


def _fabricate(path: Path, mode: str, scale: float, seed: int, is_curve: list[float]) -> None:
    """A run directory with the keys the loop and the evaluator write (3 layers, 3 log steps)."""
    path.mkdir(parents=True)
    config = {
        "dataset": {"name": "cifar10"},
        "norm": {"mode": mode, "layer_scales_geomean": None},
        "scale": scale,
        "seed": seed,
        "out_dir": str(path.parent),
        "run_name": path.name,
    }
    OmegaConf.save(OmegaConf.create(config), path / "config.yaml")
    records = []
    for i, step in enumerate((100, 200, 300)):
        record = {"step": step, "is50k": is_curve[i], "fid10k_5k": 50 - 10 * is_curve[i]}
        for t, layer in enumerate(("c0", "c1", "linear")):
            record |= {
                f"grad_norm/{layer}": 0.1 * (t + 1),
                f"prop1_grad/{layer}": 1.0 + t + i,
                f"prop1_bound/{layer}": 10.0,
                f"variance/{layer}": 1e-3,
                f"spectral_norm/{layer}": 1.0,
                f"variance_bound_thm2/{layer}": 2e-3,
            }
            if layer != "linear":
                record |= {f"sigma_ratio/{layer}": 1.5, f"sigma_ratio_bound/{layer}": 3.0 - t}
        records.append(record)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_make_figures_draws_every_figure_from_fabricated_runs(tmp_path: Path, capsys) -> None:
    runs = []
    for mode, scale in (("ssn", 1.0), ("ssn", 1.5)):
        for seed in (0, 1):
            runs.append(tmp_path / "runs" / f"{mode}-s{scale}-seed{seed}")
            _fabricate(runs[-1], mode, scale, seed, [1.0 + seed, 2.0 + scale, 3.0])
    written = make_figures.main([*map(str, runs), "--out", str(tmp_path / "fig")])
    printed = capsys.readouterr().out
    assert "skipped thm1_scatter: no run with norm.layer_scales_geomean" in printed
    names = {p.name for p in written}
    for figure in (
        "gradient_norms",
        "grad_norm_total",
        "variance",
        "sigma_ratio",
        "metric_curves",
        "best_vs_scale",
    ):
        assert {f"{figure}.png", f"{figure}.pdf"} <= names
    assert all(p.stat().st_size > 1000 for p in written)
    groups = make_figures.group_runs([make_figures.read_run(r) for r in runs])
    assert [(label, len(members)) for label, members in groups] == [
        ("scale=1.0", 2),
        ("scale=1.5", 2),
    ]


def test_make_figures_skips_what_runs_lack(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "bare"
    run_dir.mkdir()
    OmegaConf.save(
        OmegaConf.create({"norm": {"mode": "sn"}, "scale": 1.0, "seed": 0}), run_dir / "config.yaml"
    )
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 1, "d_loss": 1.0}) + "\n")
    assert make_figures.main([str(run_dir), "--out", str(tmp_path / "fig")]) == []
    assert capsys.readouterr().out.count("skipped") == 7
    make_figures.main([str(run_dir), "--out", str(tmp_path / "fig"), "--figures", "variance"])
    assert capsys.readouterr().out == "skipped variance: no run logged variance/<layer>\n"


@pytest.mark.slow
def test_real_tiny_run_logs_analysis_and_gets_its_figures(tmp_path: Path) -> None:
    """The loop logs log_scalars at log_freq; the Thm. 1 option sets each layer's norm."""
    write_mnist(tmp_path / "data", n=20)
    run_dir = run(
        tmp_path,
        "dataset=mnist",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.download=false",
        "dataset.resolution=28",
        "model.width=1.0",  # TINY's quickstart narrows the cnn; dcgan_mnist takes only 1
        "norm=sn",
        "norm.layer_scales_geomean=1.0",
        "train.iterations=2",
        "train.vis_freq=0",
        "run_name=thm1",
    )
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    scales = analysis.random_layer_scales(3, 1.0, 0.5, seed=0)
    # spectral_norm is sigma(W1) of c_i w / sigma_estimate; the estimate lags w by a step.
    got = [record[f"spectral_norm/{k}"] for k in ("features.0", "features.2", "linear")]
    assert got == pytest.approx(scales, rel=0.05)
    assert all(
        record[f"prop1_grad/{k}"] <= record[f"prop1_bound/{k}"] for k in ("features.0", "linear")
    )
    written = make_figures.main([str(run_dir), "--out", str(tmp_path / "fig"), "--formats", "png"])
    assert {"thm1_scatter.png", "gradient_norms.png", "sigma_ratio.png"} <= {
        p.name for p in written
    }


def test_check_theorems_tiny(tmp_path: Path, capsys) -> None:
    assert check_theorems.main(["--sizes", "2", "3", "--trials", "2", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "upper bounds: worst max v / bound" in printed and "(hold)" in printed
    assert "Thm. 3   rademacher" in printed and "fitted E[v]" in printed
    assert (tmp_path / "theorems.png").stat().st_size > 1000 and (
        tmp_path / "theorems.pdf"
    ).exists()
