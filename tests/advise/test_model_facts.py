from __future__ import annotations

import json
from pathlib import Path

import pytest
import recommend_fakes

from tunekit.core.errors import UsageError
from tunekit.core.model_facts import (
    arch_from_entry,
    catalog_entries,
    generic_arch,
    load_catalog,
    model_facts,
    parse_params,
    resolve_model,
)
from tunekit.core.registry import load_registry


def test_catalog_has_forty_models_across_the_families() -> None:
    catalog = load_catalog()
    assert len(catalog) >= 40
    families = {arch.family for arch in catalog.models.values()}
    for family in ("llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "mistral", "mixtral", "qwen2.5", "qwen3",
                   "qwen3-moe", "gemma2", "gemma3", "phi3", "smollm2"):
        assert family in families, family
    assert any(a.name.startswith("deepseek-r1-distill") for a in catalog.models.values())


@pytest.mark.parametrize("row", catalog_entries(), ids=lambda r: r["id"])
def test_param_count_matches_published_size_within_3_percent(row: dict) -> None:
    arch = arch_from_entry(dict(row))
    counted = arch.param_count() / 1e9 + row.get("extra_params_b", 0.0)
    assert counted == pytest.approx(row["params"], rel=0.03)


def test_moe_active_params_match_published() -> None:
    catalog = load_catalog()
    # Mixtral 8x7B: 12.9B active; Qwen3-30B-A3B: 3.3B active; Qwen3-235B-A22B: 22B active (model cards)
    for name, active in (("mixtral-8x7b", 12.9), ("qwen3-30b-a3b", 3.3), ("qwen3-235b-a22b", 22.0)):
        arch = catalog.find(name)
        assert arch is not None
        assert arch.param_count(active_only=True) / 1e9 == pytest.approx(active, rel=0.03)


@pytest.mark.parametrize("name", ["llama-3.1-8b", "LLAMA-3.1-8B", "meta-llama/Llama-3.1-8B",
                                  "meta-llama/llama-3.1-8b-instruct", "llama3.1-8b", "Llama-3.1-8B"])
def test_aliases_are_case_insensitive_and_include_hf_ids(name: str) -> None:
    assert resolve_model(name).name == "llama-3.1-8b"


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(UsageError, match=r"llama-3\.1-8b"):
        resolve_model("llama-3.1-8c")


def test_local_folder_and_config_json(tmp_path: Path) -> None:
    config = {"num_hidden_layers": 4, "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 2048, "model_type": "llama"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    for where in (tmp_path, tmp_path / "config.json"):
        arch = resolve_model(str(where))
        assert (arch.layers, arch.hidden, arch.kv_heads, arch.head_dim) == (4, 256, 2, 64)


@pytest.mark.parametrize(("text", "count"), [("7B", 7e9), ("135M", 135e6), ("1.5b", 1.5e9), ("70", 70e9)])
def test_parse_params(text: str, count: float) -> None:
    assert parse_params(text) == pytest.approx(count)


@pytest.mark.parametrize("size", ["135M", "1B", "7B", "13B", "70B"])
def test_generic_model_has_the_requested_size(size: str) -> None:
    arch = generic_arch(size)
    assert arch.param_count() == pytest.approx(parse_params(size), rel=0.05)
    assert arch.hidden % 128 == 0 and arch.head_dim == 128
    assert resolve_model(None, params=size).name == arch.name


def test_bad_params_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        resolve_model(None, params="seven billion")
    with pytest.raises(UsageError):
        resolve_model(None)


def test_plugin_adds_models_through_the_hook() -> None:
    registry = load_registry(entry_points=False, extra_modules=[recommend_fakes])
    arch = resolve_model("example/fake-3b", registry=registry)
    assert arch.name == "fake-3b" and arch.layers == 26


def test_bad_plugin_model_is_recorded_not_fatal() -> None:
    class BadModels:
        from tunekit import hookimpl

        @staticmethod
        @hookimpl
        def tunekit_models() -> list[dict]:
            return [{"id": "broken", "layers": 2}, {"id": "ok-1b", "layers": 2, "hidden": 128, "intermediate": 256,
                                                      "heads": 2, "kv_heads": 2, "vocab": 100}]

    registry = load_registry(entry_points=False, extra_modules=[BadModels])
    catalog = load_catalog(registry)
    assert catalog.find("ok-1b") is not None and catalog.find("broken") is None
    assert any("broken" in f.error for f in registry.failures)


def test_model_facts_are_plain_data() -> None:
    facts = model_facts(resolve_model("mixtral-8x7b"))
    assert facts["moe"] is True and facts["experts"] == 8
    json.dumps(facts)
