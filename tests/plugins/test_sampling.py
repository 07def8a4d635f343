"""The sampling sampler: presets from docs/reference.md, overrides, a valid GenerationConfig, speculative decoding."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from transformers import GenerationConfig
from tunekit_sampling import PRESETS, SamplingParams, SamplingSampler

from tunekit.cli.main import cli


def config(**params: object) -> dict[str, object]:
    return SamplingSampler(SamplingParams(**params)).generation_config()  # type: ignore[arg-type]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_are_valid_generation_configs(preset: str) -> None:
    values = config(preset=preset)
    GenerationConfig(**values).validate(strict=True)


def test_preset_values_follow_the_reference() -> None:
    assert config(preset="chat")["temperature"] == 0.7 and config(preset="chat")["top_p"] == 0.9
    assert config(preset="creative")["temperature"] == 1.0 and config(preset="creative")["top_p"] == 0.95
    assert config(preset="brainstorm")["temperature"] == 1.2 and config(preset="brainstorm")["top_p"] == 0.98
    assert config(preset="deterministic")["do_sample"] is False
    assert all(1.0 <= float(v.get("repetition_penalty", 1.0)) <= 1.15 for v in PRESETS.values())


def test_explicit_fields_override_and_greedy_drops_sampling_knobs() -> None:
    values = config(preset="chat", temperature=0.3, top_k=40, min_p=0.05, repetition_penalty=1.1, max_new_tokens=9)
    assert values == {"do_sample": True, "temperature": 0.3, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
                      "repetition_penalty": 1.1, "max_new_tokens": 9}
    greedy = config(preset="chat", temperature=0.0)
    assert greedy["do_sample"] is False and "temperature" not in greedy and "top_p" not in greedy
    GenerationConfig(**greedy).validate(strict=True)
    assert config(preset="deterministic", temperature=0.5)["do_sample"] is True


def test_the_sampler_keeps_the_models_special_token_ids() -> None:
    """Without eos_token_id in generation_config.json, generate never stops before max_new_tokens."""
    from types import SimpleNamespace

    from tunekit.core.kinds import special_token_ids
    from tunekit.testing import make_context

    llama3_like = SimpleNamespace(generation_config=GenerationConfig(bos_token_id=5, eos_token_id=[6, 9]))
    sampler = SamplingSampler(SamplingParams(preset="chat"))
    applied = sampler.apply(llama3_like, make_context()).generation_config
    assert applied.eos_token_id == [6, 9] and applied.bos_token_id == 5  # every EOS the model lists
    assert applied.pad_token_id == 2 and applied.temperature == 0.7  # the model has none: the tokenizer's
    tokenizer = SimpleNamespace(bos_token_id=0, eos_token_id=1, pad_token_id=2)
    assert special_token_ids(None, tokenizer) == {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2}
    assert special_token_ids(GenerationConfig(eos_token_id=4), tokenizer)["eos_token_id"] == 4  # the model wins
    no_pad = SimpleNamespace(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    assert special_token_ids(GenerationConfig(eos_token_id=[6, 9]), no_pad)["pad_token_id"] == 6  # the first EOS


def test_generate_from_an_output_folder_with_speculative_decoding(tmp_path: Path) -> None:
    """A deterministic sampler with an assistant model: assisted greedy decoding gives the main model's text."""
    import yaml

    from tunekit.run.pipeline import apply_recipe
    from tunekit.testing import save_tiny_model

    main = tmp_path / "main"
    draft = tmp_path / "draft"
    save_tiny_model(main, seed=1, max_position_embeddings=64)
    save_tiny_model(draft, seed=2, max_position_embeddings=64, num_hidden_layers=1)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "gen", "eval": {"perplexity": False},
                                      "sampler": {"method": "sampling", "preset": "deterministic",
                                                  "max_new_tokens": 12, "assistant_model": str(draft)}}))
    out = tmp_path / "out"
    apply_recipe(recipe, model=main, output=out, quiet=True)
    written = GenerationConfig.from_pretrained(out)
    assert written.max_new_tokens == 12
    assert (written.bos_token_id, written.eos_token_id, written.pad_token_id) == (0, 1, 2)  # the model's own
    runner = CliRunner()
    plain = runner.invoke(cli, ["generate", str(main), "--prompt", "Anne Elliot", "--no-chat",
                                "--max-new-tokens", "12"])
    assisted = runner.invoke(cli, ["generate", str(out), "--prompt", "Anne Elliot", "--no-chat", "--json"])
    assert plain.exit_code == 0 and assisted.exit_code == 0, plain.output + assisted.output
    import json

    result = json.loads(assisted.output[assisted.output.index("{"):])
    assert result["new_tokens"] == 12
    assert result["generation_config"]["num_assistant_tokens"] == 5
    assert result["text"].strip() and result["text"] in plain.output  # speculative keeps the main model's output
