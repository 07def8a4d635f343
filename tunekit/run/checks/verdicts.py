"""ok / warn / fail for each check, with the ``tunekit recommend --symptom`` to try. Thresholds: docs/check.md.

One table of thresholds (:data:`THRESHOLDS`) so the docs, the verdicts and the tests read the same
numbers. KL thresholds follow the spread of llama.cpp's KL-divergence scoreboard (Llama-3-8B: q8_0 about
0.001, q4_K_M about 0.03-0.05, q3_K_M about 0.1, q2_K 0.4 and more), loosened for small models, which
lose more to the same bits. A trained output is *meant* to move its distribution, so for it the KL
verdict is read from the perplexity ratio on held-out general text instead (forgetting).
"""

from __future__ import annotations

from typing import Any

THRESHOLDS: dict[str, dict[str, float]] = {
    "kl_divergence": {"warn": 0.1, "fail": 0.3},  # nats per token, untrained outputs
    "perplexity_ratio": {"warn": 1.1, "fail": 1.3},  # tuned / base, trained outputs
    "loop_share_sampled": {"warn": 0.25, "fail": 0.5},  # tuned, with its own sampler
    "loop_share_greedy_increase": {"warn": 0.25, "fail": 0.5},  # tuned - base, greedy and sampled
    "distinct_2_ratio": {"warn": 0.7},  # tuned / base, greedy
    "eos_share_drop": {"warn": 0.25},  # base - tuned
    "passkey_accuracy": {"warn": 0.8, "fail": 0.5},  # tuned, at the longest length
    "passkey_drop": {"warn": 0.34},  # base - tuned, at lengths the base handles
}

SYMPTOMS = {
    "quantized": "quality-drop-after-quant", "trained": "forgets-general", "changed": "quality-drop-after-quant",
    "repetition": "repetitive", "eos": "repetitive", "long_context": "context-too-short",
}

_ORDER = {"ok": 0, "warn": 1, "fail": 2}


def worst(*verdicts: str) -> str:
    return max(verdicts, key=_ORDER.__getitem__, default="ok")


def _above(value: float, limits: dict[str, float]) -> str:
    if "fail" in limits and value >= limits["fail"]:
        return "fail"
    return "warn" if value >= limits["warn"] else "ok"


def with_advice(result: dict[str, Any], verdict: str, why: list[str], symptom: str) -> dict[str, Any]:
    """Add ``verdict``, ``why`` and (unless ok) ``try``: a command that runs as printed."""
    result["verdict"] = verdict
    result["why"] = why
    if verdict != "ok":
        result["try"] = f"tunekit recommend --symptom {symptom}"
    return result


def kl_verdict(result: dict[str, Any], *, trained: bool, quantized: bool) -> dict[str, Any]:
    ppl = result["perplexity"]
    if trained:
        ratio = ppl["tuned"] / ppl["base"]
        verdict = _above(ratio, THRESHOLDS["perplexity_ratio"])
        why = [f"held-out perplexity {ppl['base']:.2f} -> {ppl['tuned']:.2f} (x{ratio:.2f}); a trained output's "
               "KL is expected, its general perplexity should hold"]
        return with_advice(result, verdict, why, SYMPTOMS["trained"])
    verdict = _above(result["kl_divergence"], THRESHOLDS["kl_divergence"])
    why = [f"KL {result['kl_divergence']:.4f} nats/token, top-1 agreement {result['top1_agreement']:.1%}, "
           f"perplexity {ppl['base']:.2f} -> {ppl['tuned']:.2f}"]
    return with_advice(result, verdict, why, SYMPTOMS["quantized" if quantized else "changed"])


def repetition_verdict(result: dict[str, Any], *, judge_sampler: bool = True) -> dict[str, Any]:
    """Greedy loops and distinct-2 against the base; sampled loops on their own when ``judge_sampler``
    (the output set its decoding, or nothing says it did not), else against the base like greedy ones."""
    greedy, sampled = result["greedy"], result["sampled"]
    why: list[str] = []
    verdicts = []
    if judge_sampler:
        v = _above(sampled["tuned"]["loop_share"], THRESHOLDS["loop_share_sampled"])
        if v != "ok":
            why.append(f"{sampled['tuned']['loop_share']:.0%} of generations with the output's own decoding "
                       "settings loop")
        verdicts.append(v)
    for mode, runs in (("greedy", greedy), ("sampled", sampled)):
        increase = runs["tuned"]["loop_share"] - runs["base"]["loop_share"]
        v = _above(increase, THRESHOLDS["loop_share_greedy_increase"])
        if v != "ok":
            why.append(f"{mode} loops {runs['base']['loop_share']:.0%} (base) -> {runs['tuned']['loop_share']:.0%}")
        verdicts.append(v)
    base_d, tuned_d = greedy["base"]["distinct_2"], greedy["tuned"]["distinct_2"]
    if base_d > 0 and tuned_d / base_d < THRESHOLDS["distinct_2_ratio"]["warn"]:
        verdicts.append("warn")
        why.append(f"greedy distinct-2 {base_d:.2f} (base) -> {tuned_d:.2f}")
    verdict = worst(*verdicts)
    if verdict == "ok":
        why.append(f"loops: greedy {greedy['tuned']['loop_share']:.0%} (base {greedy['base']['loop_share']:.0%}), "
                   f"sampled {sampled['tuned']['loop_share']:.0%}; distinct-2 {tuned_d:.2f}")
    return with_advice(result, verdict, why, SYMPTOMS["repetition"])


def eos_verdict(result: dict[str, Any]) -> dict[str, Any]:
    why = list(result["problems"])
    verdict = "fail" if why else "ok"
    drop = result["eos_share"]["base"] - result["eos_share"]["tuned"]
    if drop >= THRESHOLDS["eos_share_drop"]["warn"]:
        verdict = worst(verdict, "warn")
        why.append(f"generations ending with EOS {result['eos_share']['base']:.0%} (base) -> "
                   f"{result['eos_share']['tuned']:.0%}")
    if not why:
        why.append(f"template and EOS/pad ids agree; {result['eos_share']['tuned']:.0%} of generations end with EOS")
    return with_advice(result, verdict, why, SYMPTOMS["eos"])


def long_context_verdict(result: dict[str, Any]) -> dict[str, Any]:
    """Judged only when the base can do the task at all (its best length reaches the warn threshold):
    a model too small to retrieve a passkey anywhere gives no signal about the extension."""
    lengths = result["lengths"]
    tuned = result["by_length"]["tuned"]
    base = result["by_length"]["base"]
    limits = THRESHOLDS["passkey_accuracy"]
    if max(base.values(), default=0.0) < limits["warn"] and max(tuned.values(), default=0.0) < limits["warn"]:
        return with_advice(result, "ok", [f"no signal: neither model retrieves the passkey at any length "
                                          f"(best {max(base.values(), default=0.0):.0%})"], SYMPTOMS["long_context"])
    longest = tuned[str(lengths[-1])]
    verdict = "fail" if longest < limits["fail"] else "warn" if longest < limits["warn"] else "ok"
    why = [f"passkey at {lengths[-1]} tokens: {longest:.0%} (base {base.get(str(lengths[-1]), 0.0):.0%})"]
    drops = [n for n in lengths if base.get(str(n), 0.0) - tuned[str(n)] >= THRESHOLDS["passkey_drop"]["warn"]]
    if drops:
        verdict = worst(verdict, "warn")
        why.append(f"worse than the base at {', '.join(map(str, drops))} tokens")
    return with_advice(result, verdict, why, SYMPTOMS["long_context"])
