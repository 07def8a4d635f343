"""Scoring a candidate that fits: the lever's rank, quality, speed, headroom, simplicity and the rules'
``prefer`` points, each with its reason; then a greedy re-ranking so the top rows differ."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tunekit.advise.estimate import GB, fits_bytes
from tunekit.advise.rules import candidates as gen
from tunekit.advise.rules.conditions import evaluate, may_hold

if TYPE_CHECKING:
    from tunekit.advise.rules.engine import Facts
    from tunekit.advise.rules.loader import Rule

Scored = tuple[float, gen.Candidate, list[str], bool]
LEVER_POINTS = (6.0, 3.0, 1.0)  # first, second, later lever named by the fired rules
SHORT_SEQ_POINTS = 0.5  # per halving of the training sequence below the one asked for
HEADROOM_POINTS = 3.0  # all of the budget left free
SPEED_POINTS = 2.0  # per x1 of declared decode speed-up over 16-bit


OPTIMIZER_WORDS = {"adamw-8bit": ", 8-bit AdamW", "paged-adamw-8bit": ", paged 8-bit AdamW",
                   "paged-adamw": ", paged AdamW", "sgd": ", SGD"}
ADAPTER_NAMES = {"lora": "LoRA", "dora": "DoRA", "vera": "VeRA", "lora-fa": "LoRA-FA", "lora-plus": "LoRA+"}


def describe(cand: gen.Candidate) -> str:
    """What the candidate is, in words: the first reason, so every row says what it shows."""
    setup, stages = cand.setup, cand.stages
    adapter = (stages.get("adapter") or {}).get("method")
    quant = (stages.get("quantizer") or {}).get("method")
    base = f"{quant} {setup.quant.bits:.3g}-bit" if quant else "16-bit"
    if cand.export:
        text = f"llama.cpp GGUF {cand.export.upper()} ({setup.quant.bits:.3g} bits/weight)"
    elif cand.method == "full":
        text = "full fine-tune (every weight)"
    elif adapter:
        text = f"{ADAPTER_NAMES.get(adapter, adapter)} on a {base} base"
    else:
        text = f"serve {base}" if cand.lever != "prune" else f"prune ({cand.stages['pruner']['method']})"
    context = stages.get("context")
    if context:
        text += f", {context['method']} RoPE x{context.get('factor', 1):g}"
    if cand.method != "infer":
        text += f", seq {setup.seq_len}" + OPTIMIZER_WORDS.get(setup.optimizer, "")
        if setup.strategy != "none":
            text += f", {setup.strategy} over {setup.gpus} GPUs"
    else:
        text += f", context {setup.seq_len}"
    return text


def needs(facts: Facts, cand: gen.Candidate) -> str:
    """The one memory figure (the point estimate, as the table shows it), its band, and how "fits" was decided:
    on the upper part of the band with the margin kept free (said once, here)."""
    assert cand.memory is not None
    mem = cand.memory
    return (f"needs ~{mem.total_gb:.1f} GB (band {mem.low / GB:.1f}-{mem.high / GB:.1f}) of "
            f"{round(facts.budget_gb(), 1):g} GB per device; fits decided on the upper part of the band "
            f"(~{fits_bytes(mem) / GB:.1f} GB) with {facts.margin:.0%} kept free")


def fixed_points(cand: gen.Candidate, levers: list[str]) -> tuple[float, list[str]]:
    """The points fitting cannot change, with their reasons: the lever's rank, the declared quality cost and
    decode speed, missing packages, a calibration pass, the number of stages."""
    reasons: list[str] = []
    index = levers.index(cand.lever) if cand.lever in levers else len(levers)
    points = LEVER_POINTS[min(index, len(LEVER_POINTS) - 1)]
    quality = -100 * cand.quality_cost
    if cand.quality_cost and cand.method != "qlora":
        reasons.append(f"expected quality cost +{100 * cand.quality_cost:.1f}% perplexity (declared by the plugin)")
    if cand.method == "qlora":
        # the declared cost is the quantized model's; an adapter trained on top recovers most of it at 4
        # bits and up (QLoRA paper: NF4 + LoRA matches 16-bit fine-tuning), so it weighs 0.2 there (enough
        # to order NF4 above FP4, not enough to put an 8-bit base's slower steps above NF4), 0.3 below
        quality *= 0.2 if cand.setup.quant.bits >= 3.5 else 0.3
        if cand.setup.quant.bits >= 3.5 and cand.quality_cost:
            reasons.append("a LoRA trained on a >= 4-bit base recovers the base's quality cost (QLoRA paper)")
    points += max(quality, -8.0)
    # decode speed counts for serving; in training only a slowdown counts (bnb int8), a fast decode kernel
    # does not make the backward pass through dequantized weights faster
    speed = cand.speedup if cand.method == "infer" else min(cand.speedup, 1.0)
    points += SPEED_POINTS * (speed - 1)
    if cand.speedup != 1:
        reasons.append(f"decode speed x{cand.speedup:.2g} vs 16-bit (declared by the plugin)")
    missing = sorted(set(cand.missing_packages))
    if missing:
        points -= 0.5
        reasons.append(f"needs packages not installed here: {', '.join(missing)} (see `tunekit plugins`)")
    if cand.calibration:
        points -= 1.0
        reasons.append("needs calibration text (a few hundred samples) and a GPTQ/AWQ-style pass")
    points -= 0.3 * len([k for k in cand.stages if k != "sampler"])
    return points, reasons


def score(facts: Facts, cand: gen.Candidate, levers: list[str], fired: list[Rule],
          fdict: dict[str, Any], wanted_seq: int | None = None) -> tuple[float, list[str]]:
    """Points and reasons; ``wanted_seq`` is the training sequence asked for before fitting shortened it."""
    assert cand.memory is not None
    points, declared = fixed_points(cand, levers)
    reasons: list[str] = [needs(facts, cand), describe(cand), *declared]
    budget = facts.budget_gb()
    if budget > 0:
        points += HEADROOM_POINTS * max(0.0, 1 - cand.memory.total_gb / budget)
    if cand.method != "infer" and wanted_seq and cand.setup.seq_len < wanted_seq:
        # a shortened sequence is a trade (the fitting step says which): an 8-bit base at 256 tokens must
        # not rank above a 4-bit one at the asked 2048
        points -= SHORT_SEQ_POINTS * math.log2(wanted_seq / cand.setup.seq_len)
    ruled = []
    for rule in fired:
        for item in rule.prefer:
            if evaluate(item.get("when"), fdict):
                points += float(item.get("points", 0))
                ruled.append(f"[{rule.id}] {item.get('reason', '')}".strip())
    reasons[2:2] = [*cand.warnings, *ruled]  # right after what it is: the table shows them first
    for note in cand.notes:
        reasons.append(note)
    return points, reasons


#: Candidate facts that fitting changes (an 8-bit or paged optimizer, sharding, the memory)
FITTED_FACTS = ("candidate.optimizer", "candidate.strategy", "candidate.memory_gb")


def optimistic(facts: Facts, cand: gen.Candidate, levers: list[str], fired: list[Rule], fdict: dict[str, Any],
               least_gb: float) -> float:
    """The most ``score`` can give ``cand`` once fitted: its fixed points, the headroom left by ``least_gb``
    (a floor under its fitted memory), no shortening, and every positive ``prefer`` point whose condition
    may hold (``fdict`` has the candidate's facts as generated; what fitting changes counts as unknown)."""
    points, _ = fixed_points(cand, levers)
    budget = facts.budget_gb()
    headroom = HEADROOM_POINTS * max(0.0, 1 - least_gb / budget) if budget > 0 else 0.0
    prefer = sum(max(0.0, float(item.get("points", 0))) for rule in fired for item in rule.prefer
                 if may_hold(item.get("when"), fdict, FITTED_FACTS))
    return points + headroom + prefer


def ceiling(fired: list[Rule], max_speedup: float, serving: bool, fdict: dict[str, Any] | None = None,
            unknown: tuple[str, ...] = ("candidate.",)) -> float:
    """The most points ``score`` can give any candidate under these fired rules: the first lever's points,
    all the headroom, the fastest declared decode (when a candidate serves), no quality cost and every
    positive ``prefer`` point whose condition may hold over ``fdict`` with the ``unknown`` facts unknown
    (all of them without it). The model ranking stops running models that cannot reach its top with this;
    ``max_speedup`` ``inf`` (a plugin declares a negative quality cost, or effects it cannot read) gives
    no ceiling."""
    if max_speedup == float("inf"):
        return float("inf")
    prefer = sum(max(0.0, float(item.get("points", 0))) for rule in fired for item in rule.prefer
                 if fdict is None or may_hold(item.get("when"), fdict, unknown))
    speed = SPEED_POINTS * max(0.0, max_speedup - 1) if serving else 0.0
    return LEVER_POINTS[0] + HEADROOM_POINTS + speed + prefer


def diverse(kept: list[Scored], limit: int) -> list[Scored]:
    """Greedy re-ranking: each pick costs the others with the same quantizer 1 point (same adapter 0.5),
    so the top picks show different options (LoRA, QLoRA 8-bit, QLoRA 4-bit, DoRA...) rather than one five times.
    The picks come first (at most ``limit``), then the rest in score order."""
    keys = {id(c): ((c.stages.get("quantizer") or {}).get("method") or "bf16",
                    (c.stages.get("adapter") or {}).get("method")) for _, c, _, _ in kept}
    pool = list(kept)
    out: list[Scored] = []
    while pool and len(out) < limit:
        def adjusted(item: Scored) -> float:
            quant, adapter = keys[id(item[1])]
            penalty = 0.0
            for _, chosen, _, _ in out:
                other_quant, other_adapter = keys[id(chosen)]
                penalty += (1.0 if other_quant == quant else 0.0) + (0.5 if adapter and other_adapter == adapter else 0)
            return item[0] - penalty

        best = max(pool, key=adjusted)
        pool.remove(best)
        out.append(best)
    return out + pool
