"""Evaluation: strided perplexity equals a token-by-token reference; ROUGE-L/BLEU on known pairs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tunekit.core.errors import UsageError
from tunekit.core.texts import eval_text, shipped_calibration_paths, shipped_eval_path
from tunekit.run.evaluate import bleu, perplexity, perplexity_of_ids, reference_scores, rouge_l


@pytest.fixture(scope="module")
def tiny() -> tuple[object, object]:
    from tunekit.testing import build_tiny_model, build_tokenizer

    return build_tiny_model(max_position_embeddings=64), build_tokenizer()


def reference_nll(model: object, ids: list[int], seq_len: int, stride: int) -> tuple[float, int]:
    """Each scored token's NLL computed with the context the window scheme gives it, one forward per token."""
    total, count, prev_end, begin = 0.0, 0, 0, 0
    while prev_end < len(ids):
        end = min(begin + seq_len, len(ids))
        for target in range(max(prev_end, begin + 1), end):
            ctx = torch.tensor([ids[begin:target]])
            with torch.no_grad():
                logits = model(ctx).logits[0, -1]  # type: ignore[operator]
            total -= float(torch.log_softmax(logits.float(), -1)[ids[target]])
            count += 1
        prev_end = end
        if end == len(ids):
            break
        begin += stride
    return total, count


@pytest.mark.parametrize("stride", [12, 5])
def test_strided_perplexity_matches_a_token_by_token_reference(tiny: tuple, stride: int) -> None:
    model, _ = tiny
    ids = torch.randint(3, 500, (26,), generator=torch.Generator().manual_seed(0)).tolist()
    got = perplexity_of_ids(model, ids, seq_len=12, stride=stride)
    total, count = reference_nll(model, ids, 12, stride)
    assert got.tokens == count
    assert got.perplexity == pytest.approx(math.exp(total / count), rel=1e-4)
    if stride < 12:
        assert got.tokens == len(ids) - 1  # overlapping windows score every token but the first once


def test_perplexity_on_text_respects_max_tokens_and_random_model_is_near_vocab(tiny: tuple) -> None:
    model, tokenizer = tiny
    result = perplexity(model, tokenizer, eval_text(None), seq_len=32, max_tokens=128)
    assert result.tokens == 4 * 31 and result.windows == 4
    assert 200 < result.perplexity < 2000  # an untrained 512-token model is close to uniform
    with pytest.raises(UsageError, match="larger than"):
        perplexity_of_ids(model, list(range(3, 50)), seq_len=8, stride=16)


def test_eval_and_calibration_text_are_kept_apart(tmp_path: Path) -> None:
    assert "persuasion" in shipped_eval_path().name
    assert shipped_calibration_paths() and not any("persuasion" in p.name for p in shipped_calibration_paths())
    assert eval_text(None).startswith("Persuasion")
    mine = tmp_path / "mine.txt"
    mine.write_text("my own held-out text")
    assert eval_text(str(mine)) == "my own held-out text"
    with pytest.raises(UsageError):
        eval_text(str(tmp_path / "missing.txt"))


def test_rouge_l_and_bleu_known_values() -> None:
    assert rouge_l(["the cat sat on the mat"], ["the cat is on the mat"]) == pytest.approx(5 / 6)
    assert rouge_l(["a b c"], ["x y z"]) == 0.0
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    assert bleu(["a b c"], ["x y z"]) == 0.0
    # brevity penalty: a correct but short candidate scores below 1
    short = bleu(["the cat sat"], ["the cat sat on the mat"])
    assert 0 < short < math.exp(1 - 6 / 3) * 1.0001


def test_reference_scores_generate_and_score(tiny: tuple, tmp_path: Path) -> None:
    model, tokenizer = tiny
    refs = tmp_path / "refs.jsonl"
    refs.write_text("\n".join(json.dumps({"prompt": p, "reference": r}) for p, r in
                              [("Anne was", "a good sister"), ("Captain Wentworth", "returned to Bath")]))
    scores = reference_scores(model, tokenizer, refs, ["rouge", "bleu"], max_new_tokens=4)
    assert scores["references"] == 2 and 0 <= scores["rouge_l"] <= 1 and 0 <= scores["bleu"] <= 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "x"}))
    with pytest.raises(UsageError, match="prompt"):
        reference_scores(model, tokenizer, bad, ["rouge"])
