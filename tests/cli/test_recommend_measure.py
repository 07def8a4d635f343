"""``recommend --measure`` on a tiny Llama: measured candidates re-ranked by KL, the budget, the cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tunekit.cli.main import cli


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunekit.testing import save_tiny_model

    folder = tmp_path_factory.mktemp("measure") / "tiny"
    save_tiny_model(folder, max_position_embeddings=256)
    return folder


def run(tiny_dir: Path) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["recommend", "--cpu-only", "--ram", "16", "--model", str(tiny_dir), "--goal",
                                      "compress", "--measure", "--budget-minutes", "0.1", "--json"])
    assert result.exit_code == 0, result.output
    recs: list[dict[str, Any]] = json.loads(result.stdout)["recommendations"]
    return recs


def test_measure_json_stays_clean_when_a_backend_prints(tiny_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tunekit.run import measure_recipes

    real = measure_recipes.measure_and_rerank

    def noisy(*args: Any, **kwargs: Any) -> Any:
        print("WARN  a backend's import banner")  # what GPTQModel prints on import
        return real(*args, **kwargs)

    monkeypatch.setenv("TUNEKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(measure_recipes, "measure_and_rerank", noisy)
    assert run(tiny_dir)  # parses as JSON


def test_measure_reranks_by_kl_and_caches(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEKIT_CACHE", str(tmp_path))
    first = run(tiny_dir)
    kinds = [r["measured"]["kind"] for r in first]
    assert "kl" in kinds  # the first cheap candidate always runs, whatever the budget
    measured = [r["measured"]["kl_divergence"] for r in first if r["measured"]["kind"] == "kl"]
    assert kinds[:len(measured)] == ["kl"] * len(measured)  # measured first ...
    assert measured == sorted(measured)  # ... best measured quality first
    # skipped: over the budget, or a candidate whose weights change only at export (a GGUF K-quant)
    assert all(r["measured"]["note"].startswith(("budget", "trains, does not fit, or changes no weights"))
               for r in first if r["measured"]["kind"] == "skipped")
    assert [r["rank"] for r in first] == list(range(1, len(first) + 1))
    again = run(tiny_dir)
    cached = [r["measured"] for r in again if r["measured"]["kind"] == "kl"]
    assert len(cached) >= len(measured) and all(m.get("cached") for m in cached[:len(measured)])


def test_measure_needs_a_local_folder() -> None:
    result = CliRunner().invoke(cli, ["recommend", "--cpu-only", "--model", "llama-3.1-8b", "--goal", "compress",
                                      "--measure"])
    assert result.exit_code == 2 and "error: --measure needs the weights locally" in result.output
