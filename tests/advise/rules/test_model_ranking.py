"""The no-model ranking runs models best first and stops when no model left can reach the top; these tests
hold it to the ranking that running every model gives, and its score ceiling to the scores it bounds."""

from __future__ import annotations

import pytest

from tunekit.advise.hardware import resolve_hardware
from tunekit.advise.rules import Facts, engine, generate, load_rules, models
from tunekit.advise.rules.fitting import could_fit_at, fit, fits
from tunekit.core import registry as plugins
from tunekit.core.model_facts import catalog_entries, load_catalog, resolve_model
from tunekit.core.registry import Registry

SITUATIONS = [
    {"vram": 8, "goal": "finetune"}, {"vram": 12, "goal": "finetune"}, {"vram": 24, "goal": "finetune"},
    {"vram": 80, "goal": "finetune"}, {"vram": 24, "goal": "finetune", "gpus": 2},
    {"vram": 8, "goal": "serve"}, {"vram": 24, "goal": "serve"}, {"vram": 24, "goal": "serve", "task": "code"},
    {"vram": 16, "goal": "long-context", "context": 32768}, {"cpu_only": True, "goal": "serve"},
]


@pytest.fixture(scope="module")
def registry() -> Registry:
    reg = plugins.get_registry(refresh=True)
    if "nf4" not in reg.of("quantizer") or "lora" not in reg.of("adapter"):
        pytest.skip("built-in plugins not installed")
    return reg


def _rank(registry: Registry, situation: dict[str, object]) -> tuple[list[models.ModelPick], list[tuple[str, str]]]:
    hardware = resolve_hardware(vram=situation.get("vram"), gpus=situation.get("gpus"),  # type: ignore[arg-type]
                                cpu_only=bool(situation.get("cpu_only")), ram=64)
    base = Facts(hardware=hardware, model=resolve_model("llama-3.1-8b"), goal=str(situation["goal"]),
                 context_target=situation.get("context"))  # type: ignore[arg-type]
    rows = {str(r["id"]): dict(r) for r in catalog_entries()}
    archs = list(load_catalog(registry).models.values())
    return models.rank_models(base, archs, rows, load_rules(registry), registry,
                              task=str(situation.get("task", "general")))


def _summary(picks: list[models.ModelPick]) -> list[tuple[str, float, str]]:
    return [(p.arch.name, round(p.score, 6), p.rec.candidate.name) for p in picks]


@pytest.mark.parametrize("situation", SITUATIONS, ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items()))
def test_stopping_early_ranks_as_running_every_model(registry: Registry, situation: dict[str, object],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fast, left_out = _rank(registry, situation)
    monkeypatch.setattr(generate, "fastest_decode", lambda _registry: float("inf"))  # no ceiling: run them all
    every, _ = _rank(registry, situation)
    assert _summary(fast) == _summary(every)
    if len(fast) == 5:
        assert any(why.startswith("cannot reach the top 5") for _, why in left_out)


def test_the_ceiling_bounds_every_model_s_best_recipe(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """For each model the ranking runs, its recipe's score is at most what ``best_possible`` promised."""
    seen: list[tuple[str, float, float]] = []
    recommend = engine.recommend

    def checked(facts: Facts, rules: list, reg: Registry, **kw: object) -> engine.Result:
        result = recommend(facts, rules, reg, **kw)  # type: ignore[arg-type]
        bound = engine.best_possible(facts, rules, generate.fastest_decode(reg))
        for rec in result.recommendations:
            seen.append((facts.model.name, rec.score, bound))
        return result

    monkeypatch.setattr(engine, "recommend", checked)
    monkeypatch.setattr(generate, "fastest_decode", lambda _registry: 4.0)  # a plugin's declared x4 decode
    for situation in SITUATIONS:
        _rank(registry, situation)
    assert len(seen) > 30
    assert all(score <= bound for _, score, bound in seen), [s for s in seen if s[1] > s[2]][:3]


def test_a_plugin_with_a_negative_quality_cost_leaves_no_ceiling(registry: Registry,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tunekit.core.kinds import Effects

    cls = registry.of("adapter")["lora"]
    monkeypatch.setattr(cls, "effects", Effects(quality_cost=-0.1))
    assert generate.fastest_decode(registry) == float("inf")


def test_a_training_candidate_that_cannot_fit_at_the_useful_length_is_final(registry: Registry) -> None:
    """``could_fit_at`` is a lower bound: when it says no, fitting the candidate never makes it fit there."""
    rules = load_rules(registry)
    refused = 0
    for vram, model in ((8, "llama-3.1-8b"), (24, "qwen3-32b"), (24, "gemma-3-27b"), (12, "mistral-nemo-12b")):
        facts = Facts(hardware=resolve_hardware(vram=vram, ram=64), model=resolve_model(model))
        run, _ = engine._diagnose(facts, rules)
        cands = generate.generate(facts, registry, run.levers, run.settings, generate.PackageCache())
        for cand in cands:
            fitted, _ = fit(facts, cand, registry)
            if not could_fit_at(facts, cand, models.USEFUL_SEQ):
                refused += 1
                assert not (fits(facts, fitted) and fitted.setup.seq_len >= models.USEFUL_SEQ), (model, cand.name)
    assert refused > 20  # the check is not vacuous


def test_may_hold_is_unknown_only_where_a_candidate_or_a_plugin_predicate_decides() -> None:
    from tunekit.advise.rules.conditions import evaluate, may_hold

    facts = {"goal": "finetune", "model": {"params_b": 8.0}, "symptoms": []}
    serve_4bit = {"all": [{"goal": "serve"}, {"fact": "candidate.bits", "op": "le", "value": 4.6}]}
    assert not may_hold(serve_4bit, facts)  # the goal already rules it out
    fine_4bit = {"all": [{"goal": "finetune"}, {"fact": "candidate.bits", "op": "le", "value": 4.6}]}
    assert may_hold(fine_4bit, facts) and not evaluate(fine_4bit, facts)  # a 4-bit candidate would satisfy it
    assert may_hold({"not": {"fact": "candidate.bits", "op": "le", "value": 4.6}}, facts)
    assert may_hold({"predicate": "some_plugin:check"}, facts)
    assert not may_hold({"fact": "model.params_b", "op": "gt", "value": 40}, facts)


def test_when_no_fine_tune_can_fit_no_candidate_could(registry: Registry) -> None:
    """``fine_tune_floor_fits`` is a floor under every training candidate's leanest estimate: when no base a
    candidate may use passes it, building the candidates finds none that could fit there (the ranking skips)."""
    rules = load_rules(registry)
    refused = 0
    for vram, model in ((24, "qwen3-32b"), (24, "gemma-3-27b"), (8, "llama-3.1-8b"), (12, "phi-4"),
                        (16, "mistral-small-24b"), (48, "llama-3.1-70b")):
        facts = Facts(hardware=resolve_hardware(vram=vram, ram=64), model=resolve_model(model))
        run, _ = engine._diagnose(facts, rules)
        cache = generate.PackageCache()
        if engine._any_fine_tune_fits(run, registry, cache, models.USEFUL_SEQ):
            continue
        refused += 1
        cands = generate.generate(facts, registry, run.levers, run.settings, cache)
        scored = engine.judge(run, cands, registry, useful_seq=models.USEFUL_SEQ)
        assert not scored, (model, vram, [s[1].name for s in scored])
    assert refused >= 3
