"""Run the checks on a loaded :class:`~tunekit.run.checks.load.Pair` and give each its verdict.

``long_context`` runs when the output's recipe extended the context or a ``--context`` target is given;
plugins add checks through ``tunekit_checks(pair, options)`` (their results are merged after the
built-in ones; a plugin's result should carry ``verdict`` and ``why`` like the built-in ones do).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit.core.errors import PluginError, UsageError
from tunekit.core.texts import eval_text
from tunekit.run.checks import CHECKS, eos, generations, kl, passkey, repetition, verdicts

if TYPE_CHECKING:
    from tunekit.core.registry import Registry
    from tunekit.run.checks.load import Pair


@dataclass(frozen=True)
class Options:
    """What to measure and how much (defaults sized for a small model on a CPU)."""

    checks: tuple[str, ...] = CHECKS
    context: int | None = None  # passkey target length; default: the output's max_position_embeddings
    prompts: Path | None = None
    generations: int = 4  # N greedy and N sampled per model
    max_new_tokens: int = 64
    text: Path | None = None
    seq_len: int = 256
    max_tokens: int = 1024


def held_out_ids(tokenizer: Any, text_path: Path | None, max_tokens: int) -> list[int]:
    text = eval_text(str(text_path) if text_path else None)
    ids: list[int] = tokenizer(text[: max_tokens * 8], add_special_tokens=False)["input_ids"]
    return ids[:max_tokens]


def check_kl(pair: Pair, options: Options) -> dict[str, Any]:
    ids = held_out_ids(pair.tokenizer, options.text, options.max_tokens)
    d = kl.divergence(pair.base, pair.tuned, ids, seq_len=options.seq_len)
    result = {"kl_divergence": round(d.kl_divergence, 6), "top1_agreement": round(d.top1_agreement, 4),
              "perplexity": {"base": round(d.perplexity_base, 4), "tuned": round(d.perplexity_tuned, 4)},
              "tokens": d.tokens}
    return verdicts.kl_verdict(result, trained=pair.trained, quantized=pair.quantized)


def _summary(gens: list[generations.Generation]) -> dict[str, Any]:
    unfinished = [g.tokens for g in gens if not g.ended_with_eos]
    return {"distinct_1": round(repetition.mean_distinct_n([g.text for g in gens], 1), 4),
            "distinct_2": round(repetition.mean_distinct_n([g.text for g in gens], 2), 4),
            "loop_share": round(len([t for t in unfinished if repetition.loops(t)]) / len(gens), 4),
            "eos_share": round(eos.eos_share(gens), 4)}


def _generations(pair: Pair, options: Options) -> dict[str, dict[str, list[generations.Generation]]]:
    prompts = generations.read_prompts(options.prompts, options.generations)
    out: dict[str, dict[str, list[generations.Generation]]] = {}
    for mode in ("greedy", "sampled"):
        if mode == "sampled" and not getattr(pair.generation_config, "do_sample", False):
            # a greedy sampler's "sampled" generations are its greedy ones (same penalties): not run twice
            out[mode] = {who: [replace(g, sampled=True) for g in gens] for who, gens in out["greedy"].items()}
            continue
        out[mode] = {
            who: generations.generate_all(model, tok, prompts, pair.generation_config, sampled=mode == "sampled",
                                          max_new_tokens=options.max_new_tokens)
            for who, model, tok in (("base", pair.base, pair.base_tokenizer), ("tuned", pair.tuned, pair.tokenizer))}
    return out


def check_repetition(pair: Pair, options: Options, gens: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {mode: {who: _summary(g) for who, g in by.items()} for mode, by in gens.items()}
    result["generations"] = options.generations
    result["max_new_tokens"] = options.max_new_tokens
    result["sampled_with"] = {k: getattr(pair.generation_config, k, None)
                              for k in ("do_sample", "temperature", "top_p", "repetition_penalty")}
    # a recipe without a sampler leaves decoding as the base had it: judge only what the weights changed
    judge_sampler = bool(pair.recipe.get("sampler")) or not pair.recipe
    return verdicts.repetition_verdict(result, judge_sampler=judge_sampler)


def check_eos(pair: Pair, options: Options, gens: dict[str, Any]) -> dict[str, Any]:
    every = {who: gens["greedy"][who] + gens["sampled"][who] for who in ("base", "tuned")}
    problems = eos.template_problems(pair.tokenizer, pair.generation_config, pair.base_tokenizer)
    result = {"eos_share": {who: round(eos.eos_share(g), 4) for who, g in every.items()},
              "template_ok": not problems, "problems": problems,
              "eos_token_id": pair.tokenizer.eos_token_id,
              "generation_eos_token_id": getattr(pair.generation_config, "eos_token_id", None)}
    return verdicts.eos_verdict(result)


def _native_and_target(pair: Pair, options: Options) -> tuple[int, int]:
    base_cfg, tuned_cfg = pair.base.config, pair.tuned.config
    native = int(getattr(base_cfg, "max_position_embeddings", 2048))
    target = options.context or int(getattr(tuned_cfg, "max_position_embeddings", native))
    return native, target


def check_long_context(pair: Pair, options: Options) -> dict[str, Any]:
    native, target = _native_and_target(pair, options)
    lengths = passkey.default_lengths(min(native, target), target)
    by: dict[str, dict[str, float]] = {}
    acc: dict[str, float] = {}
    for who, model, tok in (("base", pair.base, pair.base_tokenizer), ("tuned", pair.tuned, pair.tokenizer)):
        res = passkey.passkey(model, tok, lengths)
        by[who] = {str(n): round(a, 4) for n, a in res.by_length.items()}
        acc[who] = round(res.accuracy, 4)
    result = {"lengths": lengths, "native": native, "target": target, "accuracy": acc, "by_length": by}
    return verdicts.long_context_verdict(result)


def run_checks(pair: Pair, options: Options, registry: Registry | None = None) -> dict[str, Any]:
    """Every requested check, keyed by name (exactly :data:`CHECKS`), then plugins' checks."""
    unknown = [c for c in options.checks if c not in CHECKS]
    if unknown:
        raise UsageError(f"unknown check {unknown[0]!r}; known: {', '.join(CHECKS)}")
    results: dict[str, Any] = {}
    if "kl_divergence" in options.checks:
        results["kl_divergence"] = check_kl(pair, options)
    if {"repetition", "eos"} & set(options.checks):
        gens = _generations(pair, options)
        if "repetition" in options.checks:
            results["repetition"] = check_repetition(pair, options, gens)
        if "eos" in options.checks:
            results["eos"] = check_eos(pair, options, gens)
    if "long_context" in options.checks and (pair.extended or options.context):
        results["long_context"] = check_long_context(pair, options)
    if registry is not None:
        results.update(plugin_checks(registry, pair, options, taken=set(results)))
    return results


def plugin_checks(registry: Registry, pair: Pair, options: Options, *, taken: set[str]) -> dict[str, Any]:
    """Results of ``tunekit_checks`` implementations; a name clash with a built-in check is an error."""
    found: dict[str, Any] = {}
    for contribution in registry.pm.hook.tunekit_checks(pair=pair, options=options):
        if not isinstance(contribution, dict):
            raise PluginError(f"tunekit_checks() returned {type(contribution).__name__}, not a dict of results")
        for name, result in contribution.items():
            if name in taken or name in found:
                raise PluginError(f"tunekit_checks(): check {name!r} is already reported")
            found[name] = result
    return found
