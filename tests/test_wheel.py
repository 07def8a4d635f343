"""The built wheel works on its own: installed into a fresh venv (no torch, no checkout on the path),
the foundation commands run, shipped recipes are found by name through ``tunekit/_recipes``, every
built-in plugin registers, and the wheel installs no top-level ``plugins`` or ``recipes`` package.

Slow (builds a wheel and installs the light core dependencies from the package index): ~30 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(*args: str | Path, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", out, cwd=out)
    (built,) = out.glob("tunekit-*.whl")
    return built


@pytest.fixture(scope="module")
def tunekit_bin(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages, no pip of its own) with only the wheel and its core deps."""
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", wheel, cwd=venv)
    probe = run(python, "-c", "import importlib.util as u; print(u.find_spec('torch') is None)", cwd=venv)
    assert probe.stdout.strip() == "True", "the fresh venv must not see torch"
    return venv / "bin" / "tunekit"


def test_wheel_layout(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert "plugins" not in tops and "recipes" not in tops, sorted(tops)
    assert not {t for t in tops if t not in {"tunekit"} and not t.startswith(("tunekit_", "tunekit-"))}, sorted(tops)
    shipped = {Path(p).name for p in (ROOT / "recipes").glob("*.yaml")}
    packaged = {Path(n).name for n in names if n.startswith("tunekit/_recipes/") and n.count("/") == 2}
    assert shipped <= packaged
    assert any(n.startswith("tunekit/_recipes/rules/") for n in names)
    assert "tunekit/core/model_catalog.json" in names  # data files of the package ship with it
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[tunekit]" in text and "tunekit = tunekit.cli.main:main" in text


def test_installed_commands_work_without_a_checkout(tunekit_bin: Path, tmp_path: Path) -> None:
    names = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
    listed = run(tunekit_bin, "recipes", "ls", cwd=tmp_path).stdout
    assert all(name in listed for name in names), listed

    validated = run(tunekit_bin, "validate", *names, cwd=tmp_path).stdout
    assert validated.count("ok: ") == len(names), validated

    shown = run(tunekit_bin, "show", "--resolved", names[0], cwd=tmp_path).stdout
    assert f"name: {names[0]}" in shown

    schema = json.loads(run(tunekit_bin, "schema", cwd=tmp_path).stdout)
    assert "train" in schema["properties"]

    report = json.loads(run(tunekit_bin, "plugins", "--all", "--json", cwd=tmp_path).stdout)
    assert report["failures"] == [], report["failures"]
    declared = (ROOT / "pyproject.toml").read_text().split("[project.entry-points.tunekit]")[1].split("\n[")[0]
    expected = {line.split("=")[0].strip() for line in declared.splitlines() if "=" in line}
    owners = {item["plugin"] for items in report["kinds"].values() for item in items}
    assert owners <= expected and owners, (owners, expected)
    assert run(tunekit_bin, "--help", cwd=tmp_path).stdout.count("validate") >= 1
    ranked = json.loads(run(tunekit_bin, "recommend", "--vram", "24", "--json", cwd=tmp_path).stdout)
    assert len(ranked["models"]) == 5  # the catalog and the rules are read from the installed package
