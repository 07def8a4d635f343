"""examples/tunekit-wanda, installed like a user would: listed by ``tunekit plugins`` and considered by
``tunekit recommend`` (a ``prune-wanda`` candidate), through the public plugin API only.

The package's own tests (contract, scores, quality on SmolLM2) run in CI with
``pytest examples/tunekit-wanda/tests``; here only what the install changes for tunekit.
"""

from __future__ import annotations

import json
from pathlib import Path

from venv_helpers import layered_venv, pip_install_editable, run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tunekit-wanda"


def test_installed_wanda_is_listed_and_recommended(tmp_path: Path) -> None:
    python = layered_venv(tmp_path / "venv")
    pip_install_editable(python, EXAMPLE, tmp_path)

    listed = json.loads(run([str(python), "-m", "tunekit", "plugins", "--json"], tmp_path).stdout)
    wanda = {p["name"]: p for p in listed["kinds"]["pruner"]}.get("wanda")
    assert wanda and wanda["distribution"] == "tunekit-wanda" and wanda["ready"]

    ask = ["-m", "tunekit", "recommend", "--goal", "compress", "--model", "smollm2-135m", "--cpu-only", "--top", "50"]
    result = json.loads(run([str(python), *ask, "--json"], tmp_path).stdout)
    pruners = [(r["recipe"].get("pruner") or {}).get("method") for r in result["recommendations"]]
    explain = run([str(python), *ask, "--explain"], tmp_path, COLUMNS="400").stdout
    assert "wanda" in pruners, pruners
    assert "prune-wanda" in explain and "Wanda README" in explain  # its declared effects are the reasons
    if "magnitude" in pruners:  # same lever, lower declared quality cost: ranked first
        assert pruners.index("wanda") < pruners.index("magnitude")
