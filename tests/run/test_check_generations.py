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
