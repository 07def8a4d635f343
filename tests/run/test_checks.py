"""``tunekit check`` metrics on known inputs (tiny Llama, fixed strings, constructed prompts) and the CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from tunekit.cli.main import cli
from tunekit.run.checks import eos, kl, passkey, repetition, verdicts


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    from tunekit.testing import build_tiny_model, build_tokenizer, save_tiny_model

    folder = tmp_path_factory.mktemp("check") / "base"
    save_tiny_model(folder, max_position_embeddings=256)
    model, tokenizer = build_tiny_model(max_position_embeddings=256), build_tokenizer()
    return folder, model, tokenizer


def noisy_copy(base: Path, dest: Path, scale: float) -> Path:
    """A copy of the base folder with Gaussian noise added to every weight, recording the base like apply."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    shutil.copytree(base, dest)
    model.save_pretrained(dest)
    (dest / "metrics.json").write_text(json.dumps({"load": {"path": str(base)}}))
    return dest


# -- kl --------------------------------------------------------------------------------------


def test_kl_of_a_model_with_itself_is_zero(tiny: tuple[Path, Any, Any]) -> None:
    _, model, tokenizer = tiny
    ids = tokenizer("It is a truth universally acknowledged, " * 20, add_special_tokens=False)["input_ids"]
    d = kl.divergence(model, model, ids, seq_len=32)
    assert d.kl_divergence == pytest.approx(0.0, abs=1e-6)
    assert d.top1_agreement == 1.0
    assert d.perplexity_base == pytest.approx(d.perplexity_tuned)
    assert d.tokens == 31 * len(kl.windows_of(ids, 32))


def test_kl_on_known_distributions() -> None:
    import torch

    base = torch.log(torch.tensor([[0.4, 0.6], [0.9, 0.1]]))
    tuned = torch.log(torch.tensor([[0.9, 0.1], [0.9, 0.1]]))
    sums = kl.Sums()
    sums.add(base, tuned, torch.tensor([0, 1]))
    d = sums.result()
    expected = (0.4 * math.log(0.4 / 0.9) + 0.6 * math.log(0.6 / 0.1)) / 2  # second row: identical, KL 0
    assert d.kl_divergence == pytest.approx(expected)
    assert d.top1_agreement == 0.5  # row 0: base picks 1, tuned 0
    assert d.perplexity_base == pytest.approx(math.exp(-(math.log(0.4) + math.log(0.1)) / 2))


def test_more_noise_means_more_kl(tiny: tuple[Path, Any, Any], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    base_dir, model, tokenizer = tiny
    ids = tokenizer("Captain Wentworth had no fortune. " * 30, add_special_tokens=False)["input_ids"]
    small = AutoModelForCausalLM.from_pretrained(str(noisy_copy(base_dir, tmp_path / "a", 0.01)))
    large = AutoModelForCausalLM.from_pretrained(str(noisy_copy(base_dir, tmp_path / "b", 0.1)))
    d_small = kl.divergence(model, small, ids, seq_len=64)
    d_large = kl.divergence(model, large, ids, seq_len=64)
    assert 0 < d_small.kl_divergence < d_large.kl_divergence
    assert d_large.top1_agreement < 1.0


# -- repetition ------------------------------------------------------------------------------


def test_distinct_n_on_fixed_strings() -> None:
    assert repetition.distinct_n("a b c d", 1) == 1.0
    assert repetition.distinct_n("a a a a", 1) == 0.25
    assert repetition.distinct_n("a b a b a b", 2) == pytest.approx(2 / 5)  # (a b), (b a) among 5 bigrams
    assert repetition.distinct_n("one", 2) == 1.0  # no bigram: nothing repeats
    assert repetition.mean_distinct_n(["a b c", "a a a"], 1) == pytest.approx((1 + 1 / 3) / 2)


def test_loops_needs_a_repeated_tail() -> None:
    assert repetition.loops([1, 2, 3] + [7, 8, 9, 10] * 4)
    assert repetition.loops(list(range(20)) + [5] * 12)
    assert not repetition.loops(list(range(40)))
    assert not repetition.loops([5] * 11)  # shorter than min_span
    assert not repetition.loops([7, 8, 9, 10] * 4 + [1, 2, 3])  # the loop ended
    assert repetition.loop_share([[1] * 20, list(range(20))]) == 0.5


# -- eos ------------------------------------------------------------------------------------


def test_template_problems_name_mismatched_ids(tiny: tuple[Path, Any, Any]) -> None:
    from transformers import GenerationConfig

    _, _, tokenizer = tiny
    assert eos.template_problems(tokenizer, GenerationConfig(eos_token_id=1, pad_token_id=2)) == []
    problems = eos.template_problems(tokenizer, GenerationConfig(eos_token_id=7, pad_token_id=3))
    assert any("eos_token_id [7]" in p for p in problems) and any("pad_token_id 3" in p for p in problems)
    templated = SimpleNamespace(chat_template="{{ messages[0]['content'] }}", all_special_tokens=[])
    bare = SimpleNamespace(chat_template=None, eos_token_id=1, pad_token_id=None, all_special_tokens=[])
    assert "the base has a chat template" in eos.template_problems(bare, None, templated)[0]


# -- passkey --------------------------------------------------------------------------------


def test_passkey_prompt_hides_the_key_at_the_depth(tiny: tuple[Path, Any, Any]) -> None:
    _, _, tokenizer = tiny
    for depth in (0.0, 0.5, 1.0):
        ids = passkey.build_prompt(tokenizer, 400, depth, 42917)
        text = tokenizer.decode(ids)
        assert abs(len(ids) - 400) < 60
        assert text.endswith(passkey.QUESTION) and text.count("42917") == 2
        where = text.index("42917") / len(text)
        assert abs(where - depth) < 0.2
    assert passkey.recalled(" 42917. Remember", 42917)
    assert not passkey.recalled(" 4291", 42917) and not passkey.recalled(" none", 42917)
    assert passkey.default_lengths(2048, 8192) == [1024, 2048, 4096, 8192]


def test_passkey_scores_a_model_that_reads_the_key() -> None:
    """A stand-in whose generate copies the first 5-digit number in the prompt: accuracy 1."""
    import re

    import torch

    from tunekit.testing import build_tokenizer as tiny_tokenizer

    tokenizer = tiny_tokenizer()

    class Reader(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def generate(self, input_ids: Any, **_: Any) -> Any:
            key = re.search(r"\d{5}", tokenizer.decode(input_ids[0])).group()  # type: ignore[union-attr]
            answer = tokenizer(" " + key, add_special_tokens=False)["input_ids"]
            return torch.cat([input_ids, torch.tensor([answer])], dim=1)

    result = passkey.passkey(Reader(), tokenizer, [128, 256])
    assert result.accuracy == 1.0 and result.by_length == {128: 1.0, 256: 1.0} and result.trials == 6


# -- verdicts -------------------------------------------------------------------------------


def test_kl_verdicts_and_advice() -> None:
    def kl_result(value: float) -> dict[str, Any]:
        return {"kl_divergence": value, "top1_agreement": 0.9, "perplexity": {"base": 10.0, "tuned": 11.0}}

    assert verdicts.kl_verdict(kl_result(0.01), trained=False, quantized=True)["verdict"] == "ok"
    warned = verdicts.kl_verdict(kl_result(0.2), trained=False, quantized=True)
    assert warned["verdict"] == "warn" and warned["try"] == "tunekit recommend --symptom quality-drop-after-quant"
    assert verdicts.kl_verdict(kl_result(0.5), trained=False, quantized=True)["verdict"] == "fail"
    trained = verdicts.kl_verdict(kl_result(0.5), trained=True, quantized=False)  # ppl x1.1: warn, not fail
    assert trained["verdict"] == "warn" and trained["try"].endswith("forgets-general")


def test_repetition_verdict_flags_a_looping_sampler() -> None:
    def side(loop: float, distinct: float = 0.9) -> dict[str, float]:
        return {"loop_share": loop, "distinct_2": distinct}

    calm = {"greedy": {"base": side(0.25), "tuned": side(0.25)}, "sampled": {"base": side(0.0), "tuned": side(0.0)}}
    assert verdicts.repetition_verdict(calm)["verdict"] == "ok"
    looping = {"greedy": {"base": side(0.25), "tuned": side(0.25)},
               "sampled": {"base": side(0.0), "tuned": side(0.75, 0.3)}}
    flagged = verdicts.repetition_verdict(looping)
    assert flagged["verdict"] == "fail" and flagged["try"] == "tunekit recommend --symptom repetitive"
    same_as_base = {mode: {"base": side(1.0), "tuned": side(1.0)} for mode in ("greedy", "sampled")}
    assert verdicts.repetition_verdict(same_as_base, judge_sampler=False)["verdict"] == "ok"
    assert verdicts.repetition_verdict(same_as_base)["verdict"] == "fail"


def test_long_context_verdict() -> None:
    result = {"lengths": [128, 256], "by_length": {"base": {"128": 1.0, "256": 0.0},
                                                   "tuned": {"128": 0.33, "256": 1.0}}}
    judged = verdicts.long_context_verdict(result)
    assert judged["verdict"] == "warn" and "worse than the base at 128" in judged["why"][1]
    hopeless = {"lengths": [128], "by_length": {"base": {"128": 0.0}, "tuned": {"128": 0.0}}}
    assert verdicts.long_context_verdict(hopeless)["verdict"] == "ok"


# -- the command ----------------------------------------------------------------------------


def test_check_command_json_keys(tiny: tuple[Path, Any, Any], tmp_path: Path) -> None:
    base_dir, _, _ = tiny
    out = noisy_copy(base_dir, tmp_path / "out", 0.02)
    result = CliRunner().invoke(cli, ["check", str(out), "--json", "-n", "1", "--max-new-tokens", "12",
                                      "--max-tokens", "128", "--context", "256"])
    assert result.exit_code in (0, 1), result.output
    data = json.loads(result.stdout)
    assert list(data) == ["kl_divergence", "repetition", "eos", "long_context"]
    assert {"kl_divergence", "top1_agreement", "perplexity", "verdict", "why"} <= set(data["kl_divergence"])
    assert set(data["kl_divergence"]["perplexity"]) == {"base", "tuned"}
    assert data["kl_divergence"]["kl_divergence"] > 0
    assert {"greedy", "sampled"} <= set(data["repetition"]) and data["eos"]["template_ok"] is True
    assert data["long_context"]["lengths"][-1] == 256
    assert all(r["verdict"] in ("ok", "warn", "fail") for r in data.values())


def test_check_without_a_base_is_a_usage_error(tiny: tuple[Path, Any, Any], tmp_path: Path) -> None:
    out = shutil.copytree(tiny[0], tmp_path / "nobase")
    result = CliRunner().invoke(cli, ["check", str(out)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: ") and "--base" in result.output


def test_a_plugin_check_may_not_reuse_a_reported_name() -> None:
    import types

    from tunekit import hookimpl
    from tunekit.core.errors import PluginError
    from tunekit.core.registry import load_registry
    from tunekit.run.checks.runner import Options, plugin_checks

    module = types.ModuleType("tunekit_test_checks")

    @hookimpl
    def tunekit_checks(pair: Any, options: Any) -> dict[str, Any]:
        return {"eos": {"verdict": "ok", "why": []}}

    module.tunekit_checks = tunekit_checks  # type: ignore[attr-defined]
    registry = load_registry(entry_points=False, extra_modules=[module])
    with pytest.raises(PluginError, match="'eos' is already reported"):
        plugin_checks(registry, SimpleNamespace(), Options(), taken={"eos"})  # type: ignore[arg-type]


@pytest.mark.slow
def test_kl_orders_rtn_bits_on_smollm2() -> None:
    """On the trained SmolLM2: RTN 3-bit moves the distribution far more than RTN 4-bit (same group size)."""
    import copy

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunekit.core.context import StageContext
    from tunekit.core.fixtures import smollm2_path
    from tunekit.core.recipe import load_recipe
    from tunekit.core.texts import eval_text

    path = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    base = AutoModelForCausalLM.from_pretrained(path).eval()
    ids = tokenizer(eval_text(None)[:4000], add_special_tokens=False)["input_ids"][:256]
    kls = {}
    for bits in (4, 3):
        resolved = load_recipe("quantize-rtn", overrides=[f"quantizer.bits={bits}"])
        ctx = StageContext(recipe=resolved.recipe, model_path=path, tokenizer=tokenizer, log=lambda _: None)
        tuned = resolved.stages["quantizer"].apply(copy.deepcopy(base), ctx)
        kls[bits] = kl.divergence(base, tuned, ids, seq_len=256).kl_divergence
    assert 0 < kls[4] < kls[3] and kls[3] > 2 * kls[4]
