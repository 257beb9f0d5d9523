"""The two layers: `bssn` ships alone and depends on torch; the harness runs from the checkout."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import bssn

ROOT = Path(__file__).resolve().parents[1]
HARNESS_PACKAGES = ("harness", "models", "data", "scripts", "hydra_plugins.bssn_sweeps")


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def imported_top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_library_imports_torch_and_the_standard_library_only() -> None:
    allowed = {"torch", "bssn", *sys.stdlib_module_names}
    for path in python_files("bssn"):
        foreign = imported_top_level_names(path) - allowed
        assert not foreign, f"{path.relative_to(ROOT)} imports {sorted(foreign)}"


def test_no_sys_path_edits_and_no_reference_to_the_internal_spec() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for name in tracked:
        path = ROOT / name
        if (
            name.startswith("docs/")
            or not path.is_file()
            or path.suffix not in {".py", ".md", ".yaml", ".toml", ".txt", ".cff", ""}
        ):
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".py" and re.search(r"sys\.path\.(insert|append)|sys\.path\s*=", text):
            offenders.append(f"{name}: edits sys.path")
        if re.search(r"SPEC\.md|SPEC (section|§)|SPEC §", text) and name != "tests/test_layout.py":
            offenders.append(f"{name}: cites SPEC")
    assert not offenders, "\n".join(offenders)


def test_every_cited_doc_exists() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    cited = set()
    for name in tracked:
        if (ROOT / name).suffix in {".py", ".md", ".yaml"} and (ROOT / name).is_file():
            cited |= set(re.findall(r"docs/[a-z0-9_]+\.md", (ROOT / name).read_text()))
    assert cited, "the code cites no docs/ page"
    missing = sorted(c for c in cited if not (ROOT / c).is_file())
    assert not missing, f"cited but missing: {missing}"


@pytest.mark.slow
def test_the_wheel_ships_bssn_alone_and_works_outside_the_checkout(tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("bssn-*.whl")
    assert wheel.name.startswith(f"bssn-{bssn.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
    assert top == {"bssn", f"bssn-{bssn.__version__}.dist-info"}

    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(target)}
    probe = (
        "import importlib.util, bssn, torch\n"
        "layer = bssn.apply(torch.nn.Conv2d(3, 8, 3), 'bssn', scale=1.2)\n"
        "assert layer(torch.randn(1, 3, 5, 5)).shape == (1, 8, 3, 3)\n"
        f"assert bssn.__file__.startswith({str(target)!r}), bssn.__file__\n"
        f"print([n for n in {HARNESS_PACKAGES!r} if importlib.util.find_spec(n)])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # no harness module is importable by accident
