"""The benchmark scripts run and print their tables (their figures are not checked here:
speed is measured by running them, README "Performance")."""

from __future__ import annotations

import sys

import pytest

from scripts import bench_norm


def test_bench_norm_prints_every_variant_with_its_paired_ratio(monkeypatch, capsys) -> None:
    argv = ["bench_norm", "--device", "cpu", "--batch", "2", "--rounds", "2", "--threads", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    bench_norm.main()
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert set(bench_norm.VARIANTS) <= set(rows)
    assert rows["none"].split("|")[3].strip() == "1.000"  # none against itself, every round
    assert "sn / torch spectral_norm, normalization alone" in out


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    times = {"none": [100.0, 200.0, 100.0], "sn": [110.0, 204.0, 103.0]}
    assert bench_norm.paired_ratio(times, "sn") == pytest.approx(1.03)
