"""Throwaway venvs layered on the test interpreter's, for tests that ``pip install`` a plugin package.

Installing into the shared venv would change every other process's ``tunekit plugins``; a layered venv
sees this interpreter's packages (tunekit editable, torch) through a ``.pth`` file but installs into
itself, and disappears with ``tmp_path``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path


def layered_venv(path: Path) -> Path:
    """Create the venv; return its python."""
    venv.create(path, with_pip=False, system_site_packages=False)
    python = path / "bin" / "python"
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    parent = sysconfig.get_path("purelib")
    # A .pth "import" line runs site.addsitedir, which also processes the parent's .pth files (editables).
    Path(target, "zz_parent_venv.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


def run(cmd: list[str], cwd: Path, timeout: int = 300, **env_extra: str) -> subprocess.CompletedProcess[str]:
    """Run with strict plugin loading; fail the test with the output when the command fails."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "TUNEKIT_DISABLE_PLUGINS"}}
    env.update({"TUNEKIT_STRICT_PLUGINS": "1", **env_extra})
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def pip_install_editable(python: Path, package: Path, cwd: Path) -> None:
    """``pip install -e`` offline into the layered venv (setuptools from the parent builds it)."""
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-build-isolation",
         "--no-deps", "--no-index", "-e", str(package)], cwd)
