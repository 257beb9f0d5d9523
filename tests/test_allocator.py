"""harness/allocator.py: freed CPU memory is reused, so training steps stop page-faulting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import allocator

ROOT = Path(__file__).resolve().parents[1]

# Minor page faults per forward+backward of an SN-normalized CIFAR10 CNN D at batch 8,
# after warm-up, in a fresh process (malloc settings are per process).
STEPS = """
import resource, sys, torch
from harness import allocator
kept = allocator.keep_freed_memory() if sys.argv[1] == "keep" else False
import bssn
from models import build_models
_, d = build_models("cnn", resolution=32, channels=3)
bssn.apply(d, "sn")
x = torch.randn(8, 3, 32, 32)
for _ in range(3):
    d(x).mean().backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    d(x).mean().backward()
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def faults_per_step(mode: str) -> tuple[bool, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", STEPS, mode], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    kept, faults = out.stdout.split()
    return kept == "True", float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt (Linux)")
def test_kept_memory_stops_the_page_faults_of_every_step() -> None:
    applied, kept_faults = faults_per_step("keep")
    if not applied:
        pytest.skip("not glibc: mallopt is unavailable")
    _, default_faults = faults_per_step("default")
    if default_faults < 50:
        pytest.skip(f"glibc's defaults do not fault here ({default_faults} per step)")
    # Measured here: about 450 faults per step with glibc's defaults, 0 kept.
    assert kept_faults < default_faults / 10


def test_a_users_malloc_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in [
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
        ("MALLOC_TRIM_THRESHOLD_", "0"),
        ("LD_PRELOAD", "libjemalloc.so.2"),
    ]:
        with monkeypatch.context() as m:
            for other in ("GLIBC_TUNABLES", *allocator.USER_SETTINGS):
                m.delenv(other, raising=False)
            m.setattr(allocator, "_applied", None)
            m.setenv(name, value)
            assert allocator.keep_freed_memory() is False, name
    # Tunables for something other than malloc do not count as a choice.
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX512F")
    assert allocator._user_chose() is None
