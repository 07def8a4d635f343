"""The generations behind the repetition and EOS checks: batched greedy equals one prompt at a time, rows
that stop early in a batch, and a deliberately bad sampler flagged on a tiny model built to loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunekit.run.checks import generations


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    from tunekit.testing import build_tiny_model, build_tokenizer

    return build_tiny_model(), build_tokenizer()


def test_left_padding_and_the_cut_at_eos() -> None:
    ids, mask = generations.left_padded([[5, 6, 7], [8]], pad_id=2)
    assert ids == [[5, 6, 7], [2, 2, 8]] and mask == [[1, 1, 1], [0, 0, 1]]
    assert generations.cut_at_eos([9, 4, 1, 2, 2], {1}) == ([9, 4], True)  # pads after the EOS are not text
    assert generations.cut_at_eos([9, 4, 3], {1}) == ([9, 4, 3], False)


def test_batched_greedy_equals_one_prompt_at_a_time(tiny: tuple[Any, Any]) -> None:
    from transformers import GenerationConfig

    model, tokenizer = tiny
    prompts = generations.read_prompts(None, 5)  # 116 to 312 tokens: real left padding
    config = GenerationConfig(do_sample=True, temperature=0.7, eos_token_id=1, pad_token_id=2)
    one = generations.generate_all(model, tokenizer, prompts, config, sampled=False, max_new_tokens=16, batch_size=1)
    assert not any(g.ended_with_eos for g in one)
    # a stop token that the first prompt's greedy generation reaches at step 6: that row ends early in the
    # batch (and is padded after it) while the others run on
    stop = one[0].tokens[5]
    config.eos_token_id = [1, stop]
    one = generations.generate_all(model, tokenizer, prompts, config, sampled=False, max_new_tokens=16, batch_size=1)
    batched = generations.generate_all(model, tokenizer, prompts, config, sampled=False, max_new_tokens=16,
                                       batch_size=4)
    assert one[0].ended_with_eos and len(one[0].tokens) <= 5
    assert [(g.tokens, g.ended_with_eos, g.text) for g in batched] == [(g.tokens, g.ended_with_eos, g.text)
                                                                       for g in one]
    assert any(len(g.tokens) == 16 for g in batched)


def save_looping_model(path: Path) -> Path:
    """A tiny model whose greedy continuation cycles through three tokens forever (3 -> 4 -> 5 -> 3, ...).

    The blocks write nothing into the residual stream (``o_proj`` and ``down_proj`` zero), so the last
    hidden state is the current token's embedding; ``lm_head`` row ``next(x)`` is that embedding, so the
    top logit is ``next(x)`` by a margin of about 5 nats: greedy always loops, sampling at T 1 escapes.
    """
    import torch

    from tunekit.testing import build_tiny_model, build_tokenizer

    model = build_tiny_model()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embeddings = model.model.embed_tokens.weight
        following = list(range(embeddings.shape[0]))
        for s in range(3, len(following) - 2, 3):  # ids 0-2 are BOS/EOS/pad: never predicted
            following[s:s + 3] = [s + 1, s + 2, s]
        head = torch.zeros_like(model.lm_head.weight)
        head[following] = embeddings
        model.lm_head.weight.copy_(head)
    model.save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return path


@pytest.mark.parametrize(("sampler", "verdict"), [
    ({"temperature": 0, "repetition_penalty": 1.0, "max_new_tokens": 1024}, "fail"),
    ({"preset": "creative"}, "ok"),
])
def test_a_bad_sampler_is_flagged_on_a_looping_model(tmp_path: Path, sampler: dict[str, Any], verdict: str) -> None:
    """The issue's bad sampler (greedy, no repetition penalty, long generation) loops on a model prone to
    it and fails the repetition check; the creative preset on the same weights does not loop."""
    import yaml
    from click.testing import CliRunner

    from tunekit.cli.main import cli
    from tunekit.run.pipeline import apply_recipe

    base = save_looping_model(tmp_path / "base")
    recipe = tmp_path / "sampler.yaml"
    recipe.write_text(yaml.safe_dump({"name": "sampler", "sampler": {"method": "sampling", **sampler},
                                      "eval": {"perplexity": False, "check": False}}))
    out = tmp_path / "out"
    apply_recipe(recipe, model=base, output=out, quiet=True)
    result = CliRunner().invoke(cli, ["check", str(out), "--only", "repetition", "-n", "3", "--max-new-tokens", "32",
                                      "--json"])
    assert result.exit_code == (1 if verdict == "fail" else 0), result.output
    checked = json.loads(result.stdout)["repetition"]
    assert checked["verdict"] == verdict, checked["why"]
    assert checked["greedy"]["base"]["loop_share"] == checked["greedy"]["tuned"]["loop_share"] == 1.0
    assert checked["sampled"]["tuned"]["loop_share"] == (1.0 if verdict == "fail" else 0.0)
    if verdict == "fail":
        assert "with the output's own decoding settings loop" in checked["why"][0]
        assert checked["try"] == "tunekit recommend --symptom repetitive"


@pytest.mark.slow
def test_a_bad_sampler_is_flagged_on_smollm2(tmp_path: Path) -> None:
    """The issue's "done when" on the shipped SmolLM2: temperature 0, repetition_penalty 1.0 and a long
    budget loop on two shipped instructions (numbers in bench/results/check-cpu.md). Greedy "sampled"
    generations reuse the greedy ones, so this is 2 prompts x 96 tokens, batched, per model."""
    import yaml
    from click.testing import CliRunner

    from tunekit.cli.main import cli
    from tunekit.core.fixtures import smollm2_path
    from tunekit.run.pipeline import apply_recipe

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in generations.read_prompts(None, 4)[2:]))
    recipe = tmp_path / "bad-sampler.yaml"
    recipe.write_text(yaml.safe_dump({"name": "bad-sampler", "eval": {"perplexity": False, "check": False},
                                      "sampler": {"method": "sampling", "temperature": 0, "repetition_penalty": 1.0,
                                                  "max_new_tokens": 1024}}))
    out = tmp_path / "bad-sampler"
    apply_recipe(recipe, model=smollm2_path(), output=out, quiet=True)
    result = CliRunner().invoke(cli, ["check", str(out), "--only", "repetition", "--prompts", str(prompts),
                                      "-n", "2", "--max-new-tokens", "96", "--json"])
    assert result.exit_code == 1, result.output
    checked = json.loads(result.stdout)["repetition"]
    assert checked["verdict"] == "fail" and checked["sampled"]["tuned"]["loop_share"] >= 0.5, checked
    assert checked["sampled_with"]["do_sample"] is False and checked["sampled_with"]["repetition_penalty"] == 1.0
