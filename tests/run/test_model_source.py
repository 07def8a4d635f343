"""What ``tunekit apply`` loads: a local folder, a hub id (as transformers loads it), a catalog model's hub
id, or — only when the recipe names no model — the shipped SmolLM2. Nothing here downloads: offline is
simulated with HF_HUB_OFFLINE=1, and "in the HF cache" with a cache folder laid out as the hub writes it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tunekit.cli.main import cli
from tunekit.core.errors import UsageError
from tunekit.core.model_catalog import MODELS
from tunekit.run.model_source import HUB_ID, SHIPPED
from tunekit.run.pipeline import apply_recipe

MISSING = "tunekit-tests/no-such-model-7b"


def recipe(tmp_path: Path, **model: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "model": model, "eval": {"perplexity": False}}))
    return path


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub access allowed (tests only ever dry-run with it: the plan resolves names, nothing is fetched)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


def test_every_catalog_model_carries_its_hub_id() -> None:
    assert all(HUB_ID.match(row.get("hf_id", "")) for row in MODELS), [r["id"] for r in MODELS if "hf_id" not in r]


def test_an_uncached_hub_id_offline_is_one_line_naming_the_id_and_the_variable(tmp_path: Path) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest: tests never download
    result = CliRunner().invoke(cli, ["apply", str(recipe(tmp_path)), "--model", MISSING, "--output",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert MISSING in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("online")
def test_the_plan_says_which_model_will_load(tmp_path: Path) -> None:
    hub = apply_recipe(recipe(tmp_path), model=MISSING, dry_run=True, quiet=True).plan
    assert hub["will_load"].startswith(f"{MISSING} (Hugging Face hub") and "hub id named" in hub["checks"]
    by_id = apply_recipe(recipe(tmp_path, id="llama-3.1-8b"), dry_run=True, quiet=True).plan
    assert by_id["will_load"].startswith("meta-llama/Llama-3.1-8B (Hugging Face hub, catalog id llama-3.1-8b")
    assert by_id["stages"][0]["model"] == by_id["will_load"]
    catalog_flag = apply_recipe(recipe(tmp_path), model="qwen2.5-0.5b", dry_run=True, quiet=True).plan
    assert catalog_flag["will_load"].startswith("Qwen/Qwen2.5-0.5B (Hugging Face hub")
    assert apply_recipe(recipe(tmp_path), dry_run=True, quiet=True).plan["will_load"] == SHIPPED


def test_a_recipe_naming_a_model_never_falls_back_to_the_shipped_one(tmp_path: Path) -> None:
    # offline, the catalog model's hub id is not cached: refused, not replaced by SmolLM2
    with pytest.raises(UsageError, match=r"'meta-llama/Llama-3.1-8B'.*HF_HUB_OFFLINE=1"):
        apply_recipe(recipe(tmp_path, id="llama-3.1-8b"), dry_run=True, quiet=True)
    result = CliRunner().invoke(cli, ["apply", str(recipe(tmp_path, id="my-private-13b")), "--dry-run"])
    assert result.exit_code == 2
    assert "model.id: 'my-private-13b' is not a catalog id nor a hub id" in result.output
    assert "shipped" in result.output  # says it does not substitute the shipped model


def test_a_local_folder_wins_over_a_hub_id_of_the_same_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunekit.testing import save_tiny_model

    monkeypatch.chdir(tmp_path)
    save_tiny_model(tmp_path / "org" / "name")
    plan = apply_recipe(recipe(tmp_path), model="org/name", dry_run=True, quiet=True).plan
    assert plan["will_load"] == "org/name (local folder)" and "model folder found" in plan["checks"]


@pytest.mark.slow
def test_a_cached_hub_id_loads_offline_as_transformers_does(tmp_path: Path) -> None:
    """The hub's cache layout (refs/main -> snapshots/<commit>/...) with a tiny model in it: apply loads it
    by its id with HF_HUB_OFFLINE=1, exactly as from_pretrained would after a download."""
    from tunekit.testing import save_tiny_model

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tunekit-tests--tiny-llama"
    snapshot = repo / "snapshots" / commit
    save_tiny_model(tmp_path / "model", max_position_embeddings=128)
    shutil.copytree(tmp_path / "model", snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "tunekit", "apply", str(recipe(tmp_path)), "--model",
                          "tunekit-tests/tiny-llama", "--output", str(out), "--log-json"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    events = [json.loads(line) for line in (run.stdout + run.stderr).splitlines() if line.startswith("{")]
    plan = next(e for e in events if e.get("event") == "plan")
    assert plan["will_load"].startswith("tunekit-tests/tiny-llama (Hugging Face hub")
    assert json.loads((out / "metrics.json").read_text())["load"]["params"] > 0
    assert (out / "config.json").is_file()
