"""The rules engine on fixture facts, with in-process fake plugins (no dependency on the built-ins)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import recommend_fakes

from tunekit.advise.hardware import resolve_hardware
from tunekit.advise.rules import Facts, Result, load_rules, recommend
from tunekit.advise.rules.conditions import evaluate, fill
from tunekit.advise.rules.loader import parse_rule
from tunekit.core.errors import UsageError
from tunekit.core.model_facts import resolve_model
from tunekit.core.registry import Registry, load_registry

SYMPTOMS = ("doesnt-fit", "too-slow", "niche-task", "context-too-short", "too-random", "not-random-enough",
            "repetitive", "invents-facts", "loss-plateau", "overfits", "forgets-general", "quality-drop-after-quant")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(entry_points=False, extra_modules=[recommend_fakes])


@pytest.fixture(scope="module")
def rules(registry: Registry) -> list:
    return load_rules(registry)


def run(registry: Registry, rules: list, *, vram: float | None = 24, model: str = "llama-3.1-8b",
        goal: str = "finetune", symptoms: tuple[str, ...] = (), cpu_only: bool = False, gpus: int | None = None,
        **kw: object) -> Result:
    hardware = resolve_hardware(vram=None if cpu_only else vram, cpu_only=cpu_only, ram=64, gpus=gpus)
    facts = Facts(hardware=hardware, model=resolve_model(model, registry=registry), goal=goal, symptoms=symptoms,
                  **kw)  # type: ignore[arg-type]
    return recommend(facts, rules, registry)


def stages(rec: object) -> set[str]:
    return {k for k in ("quantizer", "adapter", "context", "pruner", "sampler") if k in rec.recipe}  # type: ignore


def test_every_documented_symptom_has_a_rule(rules: list) -> None:
    assert {r.symptom for r in rules if r.symptom} >= set(SYMPTOMS)


# -- goals --------------------------------------------------------------------------------------


def test_finetune_24gb_ranks_lora_and_qlora_never_full(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=24)
    assert result.recommendations
    for rec in result.recommendations:
        assert rec.fits and rec.candidate.method in ("lora", "qlora") and "adapter" in rec.recipe
        assert "train" in rec.recipe
    assert result.recommendations[0].recipe["adapter"]["method"] == "lora"
    assert result.facts["estimates"]["full_finetune_gb"] > 100
    assert any("full fine-tune does not fit" in n for n in result.notes)


def test_finetune_8gb_leads_with_qlora_4bit(registry: Registry, rules: list) -> None:
    first = run(registry, rules, vram=8).recommendations[0]
    assert first.candidate.method == "qlora" and first.recipe["quantizer"]["method"] == "nf4"


def test_finetune_small_model_on_8gb_fits(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=8, model="llama-3.2-1b")
    assert result.recommendations[0].fits and result.no_fit is None


def test_serve_goal_prefers_16bit_when_it_fits_and_sets_seed_sampler(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=80, goal="serve")
    first = result.recommendations[0]
    assert first.candidate.method == "infer" and "quantizer" not in first.recipe
    assert first.recipe["sampler"] == {"method": "sampling", "temperature": 0.7, "top_p": 0.9}  # seed matrix, 7B


def test_serve_goal_70b_on_48gb_quantizes(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=48, model="llama-3.1-70b", goal="serve")
    first = result.recommendations[0]
    assert first.fits and first.candidate.setup.quant.bits <= 4.6
    assert first.recipe["sampler"]["temperature"] == 0.55  # seed matrix: 70B+


def test_long_context_goal_extends_rope_and_fits_the_kv_cache(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=24, model="llama-2-7b", goal="long-context", context_target=16384)
    assert result.recommendations
    for rec in result.recommendations:
        assert rec.recipe["context"]["factor"] == 4.0  # 16k from a 4k model
        assert rec.candidate.setup.seq_len == 16384
    assert result.recommendations[0].recipe["context"]["method"] == "yarn"


def test_long_context_goal_when_the_model_already_reads_it(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=24, goal="long-context", context_target=32768)
    assert all("context" not in r.recipe for r in result.recommendations)
    assert any("already covers" in n for n in result.notes)


def test_compress_goal_quantizes_then_prunes(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=24, goal="compress")
    levers = [r.candidate.lever for r in result.recommendations]
    assert levers[0] == "quantize"
    everything = run(registry, rules, vram=24, goal="compress").trace
    assert any(t.rule == "goal-compress" and t.fired for t in everything)


# -- symptoms -----------------------------------------------------------------------------------


def test_doesnt_fit_leads_with_4bit(registry: Registry, rules: list) -> None:
    first = run(registry, rules, vram=24, goal="serve", symptoms=("doesnt-fit",)).recommendations[0]
    assert 3.5 <= first.candidate.setup.quant.bits <= 4.6
    # in training the same adapter on the same base, leaner (8-bit AdamW, shorter sequence) comes first,
    # then the 4-bit base
    recs = run(registry, rules, vram=24, goal="finetune", symptoms=("doesnt-fit",)).recommendations
    assert recs[0].candidate.lever == "savings" and recs[0].candidate.setup.optimizer == "adamw-8bit"
    assert 3.5 <= recs[1].candidate.setup.quant.bits <= 4.6


def test_doesnt_fit_considers_a_third_party_quantizer(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=24, goal="serve", symptoms=("doesnt-fit",))
    hqq = result.recommendations[0]  # registered by a fake "third-party" module; tunekit does not know its name
    assert hqq.recipe["quantizer"]["method"] == "hqq"
    assert any("plugin rule fired" in reason for reason in hqq.reasons)  # a rule from tunekit_rules


def test_too_slow_quantizes_for_speed(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=24, goal="serve", symptoms=("too-slow",))
    first = result.recommendations[0]
    assert "quantizer" in first.recipe and first.candidate.speedup > 1
    assert any("speculative decoding" in n for n in first.next)


def test_niche_task_fine_tunes(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=24, goal="serve", symptoms=("niche-task",))
    assert all("adapter" in r.recipe and "train" in r.recipe for r in result.recommendations)


def test_context_too_short_extends_context(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=24, model="llama-2-7b", goal="serve", symptoms=("context-too-short",))
    assert result.recommendations and all("context" in r.recipe for r in result.recommendations)


@pytest.mark.parametrize(("symptom", "expected"), [
    ("too-random", {"temperature": 0.3, "top_p": 0.9}),
    ("not-random-enough", {"temperature": 1.0, "top_p": 0.95}),
    ("repetitive", {"repetition_penalty": 1.1}),
])
def test_sampler_symptoms_change_only_the_sampler(registry: Registry, rules: list, symptom: str,
                                                  expected: dict) -> None:
    for goal in ("serve", "finetune"):
        result = run(registry, rules, vram=24, goal=goal, symptoms=(symptom,))
        assert len(result.recommendations) == 1
        rec = result.recommendations[0]
        assert stages(rec) == {"sampler"} and "train" not in rec.recipe
        for key, value in expected.items():
            assert rec.recipe["sampler"][key] == value


def test_invents_facts_says_use_retrieval(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=24, symptoms=("invents-facts",))
    assert result.recommendations == []
    assert any("no tuning lever: use retrieval" in n for n in result.notes)
    assert result.to_dict()["facts"]["diagnosis"]["notes"]


def test_loss_plateau_raises_rank(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=24, symptoms=("loss-plateau",))
    lora = [r for r in result.recommendations if r.recipe["adapter"]["method"] == "lora"]
    assert lora and lora[0].recipe["adapter"]["r"] == 64 and lora[0].recipe["adapter"]["targets"] == "all-linear"


@pytest.mark.parametrize("symptom", ["overfits", "forgets-general"])
def test_overfitting_symptoms_lower_rank_and_hold_out_data(registry: Registry, rules: list, symptom: str) -> None:
    result = run(registry, rules, vram=24, symptoms=(symptom,))
    lora = next(r for r in result.recommendations if r.recipe["adapter"]["method"] == "lora")
    assert lora.recipe["adapter"]["r"] == 8 and lora.recipe["train"]["eval_split"] == 0.1
    assert lora.recipe["train"]["epochs"] == 1


def test_quality_drop_after_quant_prefers_more_bits_and_not_rtn(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=24, goal="serve", symptoms=("quality-drop-after-quant",))
    first = result.recommendations[0]
    assert first.candidate.setup.quant.bits >= 5 and first.recipe["quantizer"]["method"] != "rtn"
    rtn = [r.rank for r in result.recommendations if r.recipe["quantizer"]["method"] == "rtn"]
    assert not rtn or min(rtn) > 1


# -- hardware, no-fit, purity, shape ------------------------------------------------------------


def test_cuda_only_plugin_dropped_without_cuda(registry: Registry, rules: list) -> None:
    result = run(registry, rules, cpu_only=True, goal="serve", model="qwen2.5-0.5b")
    assert all(r.recipe.get("quantizer", {}).get("method") != "marlin-fp8" for r in result.recommendations)
    assert any(name.startswith("marlin-fp8") and "CUDA" in why for name, why in result.dropped)


def test_nothing_fits_names_hardware_and_multi_gpu_launch(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=16, model="llama-3.1-70b")
    assert result.no_fit is not None and not any(r.fits for r in result.recommendations)
    assert result.no_fit["smallest_gpu"] in ("a100-80gb", "h100", "rtx-6000-ada", "l40s", "rtx-a6000")
    assert any(c.startswith("tunekit launch ") and "--gpus" in c for c in result.no_fit["commands"])
    assert any("accelerate launch" in c and "fsdp" in c for c in result.no_fit["commands"])
    assert result.no_fit["cpu_offload"]["cpu_ram_gb"] > 0
    assert any("smallest GPU" in n for n in result.notes)


def test_several_gpus_shard_training_with_fsdp(registry: Registry, rules: list) -> None:
    result = run(registry, rules, vram=24, gpus=8, model="llama-3.1-70b")
    first = result.recommendations[0]
    assert first.fits and first.recipe["distributed"] == {"strategy": "fsdp", "gpus": 8}
    assert first.candidate.memory.assumptions["strategy"] == "fsdp"  # type: ignore[union-attr]
    assert any("sharded with FSDP over 8 GPUs" in r for r in first.reasons)


def test_pure_and_json_shape(registry: Registry, rules: list) -> None:
    one, two = run(registry, rules, vram=24).to_dict(), run(registry, rules, vram=24).to_dict()
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert set(one) == {"facts", "recommendations"}
    for rec in one["recommendations"]:
        assert set(rec) == {"rank", "recipe", "memory", "fits", "score", "reasons"}
        assert set(rec["memory"]) == {"total_gb", "tensors_gb", "low_gb", "high_gb", "fits_gb", "breakdown",
                                      "assumptions"}
        assert rec["recipe"]["adapter"]["method"]  # the resolved recipe: every default filled in
        assert rec["recipe"]["adapter"]["kind"] == "adapter" and "eval" in rec["recipe"] and "output" in rec["recipe"]


# -- the rule language --------------------------------------------------------------------------


def test_conditions() -> None:
    facts = {"goal": "serve", "symptoms": ["too-slow"], "model": {"params_b": 8.0}, "candidate": {"bits": 4.1}}
    assert evaluate({"all": [{"goal": "serve"}, {"symptom": "too-slow"}]}, facts)
    assert evaluate({"any": [{"goal": "finetune"}, {"fact": "model.params_b", "op": "lt", "value": 10}]}, facts)
    assert not evaluate({"not": {"fact": "candidate.bits", "op": "le", "value": 4.6}}, facts)
    assert not evaluate({"fact": "missing.path", "op": "eq", "value": None}, facts)
    assert evaluate({"fact": "symptoms", "op": "contains", "value": "too-slow"}, facts)
    assert fill("{model.params_b} B, {nope}", facts) == "8.0 B, {nope}"


def test_predicate_escape_hatch(registry: Registry) -> None:
    module = ModuleType("tk_test_predicates")
    module.big = lambda facts: facts["model"]["params_b"] > 50  # type: ignore[attr-defined]
    sys.modules["tk_test_predicates"] = module
    try:
        rule = parse_rule({"id": "x", "when": {"predicate": "tk_test_predicates:big"}}, "test")
        assert evaluate(rule.when, {"model": {"params_b": 70}})
        assert evaluate({"predicate": "moe"}, {"model": {"moe": True}})
    finally:
        del sys.modules["tk_test_predicates"]


@pytest.mark.parametrize("bad", [
    {"id": "a", "when": {"fact": "x", "op": "approx", "value": 1}},
    {"id": "b", "levers": ["teleport"]},
    {"id": "c", "whenever": {}},
    {"id": "d", "when": {"predicate": "no_such_predicate"}},
    {"id": "e", "set": {"sampler": 3}},
    {"when": {"goal": "serve"}},
])
def test_bad_rules_are_usage_errors(bad: dict) -> None:
    with pytest.raises(UsageError):
        parse_rule(bad, "test")


def test_plugin_rule_errors_are_recorded_and_skipped(tmp_path: Path) -> None:
    class BadRules:
        from tunekit import hookimpl

        @staticmethod
        @hookimpl
        def tunekit_rules() -> list:
            return [{"id": "bad", "levers": ["nope"]}, {"id": "good-one", "when": {"goal": "serve"}}]

    registry = load_registry(entry_points=False, extra_modules=[BadRules])
    ids = {r.id for r in load_rules(registry)}
    assert "good-one" in ids and "bad" not in ids and "goal-serve" in ids
    assert any("bad" in f.error for f in registry.failures)
