"""Which model, when none is named: ``tunekit recommend --vram 24`` ranks the catalog (and plugin models).

For serving, the largest/best model whose quantized weights and KV cache at the needed context fit (the
way llmfit and Ollama's context tiers choose); for fine-tuning, the largest model a LoRA/QLoRA fits at
a useful sequence length. Each model is run through the same ``recommend`` as ``--model`` does, so
its row shows the best recipe for it. Models are run best first by a cheap pre-score (size, recency,
task, instruction tuning) among those whose 4-bit weights could fit at all, until no model left can
reach the top: its pre-score plus the most its recipe could add (``scoring.ceiling``) falls below the
last pick's score. So the ranking is the one running every model would give (a test checks it), in a
fraction of the time: on 24 GB, 5-9 of ~40 catalog models run instead of all.

The score, with the reason for each part:
- size: ``4 * log2(params)``: quality grows with parameters at a fixed family generation (scaling laws);
  the ``simple`` task halves it (a small model answers simple prompts, faster and cheaper);
- recency: +1.5 per year after 2023 (newer generations beat older ones a size up: Llama-3.1-8B vs
  Llama-2-13B on MMLU 66 vs 55);
- task: +8 for a model with the task's skill (code, reasoning): a task-tuned model matches a general one
  3-4x its size on the task (Qwen2.5-Coder-7B-Instruct vs Gemma-3-27B-it, HumanEval 88 vs 88);
  reasoning also wants >= 7B;
- instruction-tuned: +2 for serving (a base model continues text, it does not follow instructions);
- context: -6 when the native window is below --context (RoPE stretching costs quality);
- the recipe: its own score / 4 (a model that only fits at 3 bits or a short sequence ranks lower);
- a GPU/RAM split: -16, below every model that fits the GPU (decode at RAM speed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunekit.advise.estimate import GB, QUANTS, weight_bytes
from tunekit.advise.rules.fitting import ROOMLESS
from tunekit.advise.rules.speed import CPU_TRAIN_HOURS_LIMIT, SLOWER, cpu_train_hours
from tunekit.core.records import evolve

if TYPE_CHECKING:
    from tunekit.advise.rules.engine import Facts, Recommendation
    from tunekit.advise.rules.loader import Rule
    from tunekit.core.arch import ModelArch
    from tunekit.core.registry import Registry

TASKS = ("simple", "general", "reasoning", "code")
#: Shortest training sequence worth choosing a model for: instruction/chat samples run 512-2048 tokens
#: (Alpaca's median is under 512 with the prompt, multi-turn chats reach 2k); a model that fits only at
#: 512 is better replaced by a smaller one at 1024+
USEFUL_SEQ = 1024
#: A model served split between GPU and RAM decodes at RAM speed (~2 tokens/s for a 70B): it ranks
#: below every model that fits the GPU (the size term of a 70B over an 8B is ~12)
SPLIT_PENALTY = 16.0
#: Serving with no --latency-ms: slower than ~5 tokens/s (200 ms/token) falls behind reading speed
READING_MS = 200.0
#: Facts of Facts.to_dict that depend on the model: unknown while bounding every model at once
MODEL_FACTS = ("model.", "estimates.", "size_class", "context_target", "candidate.")
TASK_BONUS = 8.0  # see the module docstring: worth a ~4x size step (4 * log2(4))


@dataclass
class ModelPick:
    """One ranked model with its best recipe, why it was chosen and what was traded for it."""

    arch: ModelArch
    facts: Facts
    rec: Recommendation
    score: float
    why: list[str]
    traded: list[str]
    tokens_per_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.arch.name, "score": round(self.score, 2), "why": self.why, "traded": self.traded,
                "tokens_per_s": round(self.tokens_per_s, 1) if self.tokens_per_s else None,
                "recommendation": self.rec.to_dict()}


def _row(arch: ModelArch, catalog_rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return catalog_rows.get(arch.name, {})


def prescore(arch: ModelArch, row: dict[str, Any], goal: str, task: str,
             context: int | None) -> tuple[float, list[str]]:
    """The model's own merit, before any recipe: size, recency, task, instruction tuning, context."""
    size = max(arch.param_count(active_only=True) / 1e9, 0.05)
    why = []
    score = 4 * math.log2(size) * (0.5 if task == "simple" else 1.0)
    why.append(f"{arch.param_count() / 1e9:.1f}B parameters")
    year = int(str(row.get("release", "2023"))[:4])
    score += 1.5 * max(0, year - 2023)
    if row.get("release"):
        why.append(f"released {row['release']}")
    skills = row.get("skills") or []
    if task in ("code", "reasoning") and task in skills:
        score += TASK_BONUS
        why.append(f"{task}-tuned")
    if task == "reasoning" and size < 7:
        score -= 3
    if goal == "serve":
        score += 2 if row.get("instruct") else -2
        if row.get("instruct"):
            why.append("instruction-tuned variant")
    if context and arch.max_context < context:
        score -= 6
        why.append(f"native context {arch.max_context} < {context}: needs RoPE scaling")
    elif context:
        why.append(f"reads {arch.max_context} tokens natively")
    if row.get("licence"):
        why.append(f"licence {row['licence']}")
    return score, why


def could_fit(arch: ModelArch, facts: Facts) -> str | None:
    """Where the model's leanest weights (4-bit GGUF) could live: "device" (the GPU, or RAM on a CPU-only
    machine), "split" (GPU and RAM, llama.cpp serving), or None."""
    need = weight_bytes(arch, QUANTS["gguf-q4_k_m"]) / GB
    if need <= facts.budget_gb():
        return "device"
    if facts.goal == "serve" and facts.hardware.gpus and need <= facts.budget_gb() + 0.8 * facts.hardware.ram_gb:
        return "split"
    return None


def traded(facts: Facts, rec: Recommendation) -> list[str]:
    """What the recipe gave up to fit: bits, sequence, context, headroom, speed."""
    cand, out = rec.candidate, []
    if cand.setup.quant.bits < 16:
        out.append(f"{cand.setup.quant.bits:.2g}-bit")
    if cand.method != "infer" and cand.setup.seq_len < 2048:
        out.append(f"seq {cand.setup.seq_len}")
    if cand.method == "infer" and cand.setup.seq_len < min(facts.model.max_context, facts.context_target or 4096):
        out.append(f"context {cand.setup.seq_len}")
    if cand.split_layers is not None:
        out.append("GPU/RAM split")
    if cand.method != "infer" and not facts.hardware.gpus:
        out.append(f"~{cpu_train_hours(facts.model, cand.method):.0f} h per 1M tokens")
    if any(r.startswith("tight:") for r in rec.reasons):
        out.append("no memory margin")
    return out or ["nothing"]


def rank_models(base: Facts, archs: list[ModelArch], rows: dict[str, dict[str, Any]], rules: list[Rule],
                registry: Registry, *, task: str = "general",
                top: int = 5) -> tuple[list[ModelPick], list[tuple[str, str]]]:
    """Ranked models that fit ``base`` (its model is replaced per candidate), and why others were left out.

    ``base.latency_ms`` (for serving, reading speed when not set) is a constraint on each model's recipes, not
    a filter on its best one: a model whose 16-bit weights decode too slowly is offered quantized."""
    from tunekit.advise.rules.conditions import may_hold
    from tunekit.advise.rules.engine import best_possible, recommend
    from tunekit.advise.rules.generate import PackageCache, fastest_decode
    from tunekit.advise.rules.scoring import ceiling
    from tunekit.advise.rules.speed import decode_speed

    if base.goal == "serve" and not base.latency_ms:
        base = evolve(base, latency_ms=READING_MS)
    left_out: list[tuple[str, str]] = []
    pre = []
    for arch in archs:
        where = could_fit(arch, base)
        if where is None:
            left_out.append((arch.name, "even 4-bit weights do not fit"))
            continue
        if base.goal == "serve" and base.context_target and arch.max_context < base.context_target:
            left_out.append((arch.name, f"reads {arch.max_context} tokens natively, fewer than --context "
                                        f"{base.context_target} (--goal long-context stretches it)"))
            continue
        hours = cpu_train_hours(arch) if base.goal == "finetune" and not base.hardware.gpus else 0.0
        if hours > CPU_TRAIN_HOURS_LIMIT:  # whatever the recipe: an adapter's FLOPs do not depend on the base
            left_out.append((arch.name, f"a LoRA on the CPU would take ~{hours:.0f} h per million training tokens"))
            continue
        score, why = prescore(arch, _row(arch, rows), base.goal, task, base.context_target)
        score -= SPLIT_PENALTY if where == "split" else 0.0
        pre.append((score, arch, why, where))
    pre.sort(key=lambda item: -item[0])
    cache, picks = PackageCache(), list[ModelPick]()
    fastest = fastest_decode(registry)
    # no model can get more than the rules that may fire on this hardware and goal, whatever the model
    base_facts = base.to_dict()
    anywhere = ceiling([r for r in rules if may_hold(r.when, base_facts, MODEL_FACTS)], fastest, serving=True,
                       fdict=base_facts, unknown=MODEL_FACTS)
    for index, (score, arch, why, where) in enumerate(pre):
        facts = evolve(base, model=arch)
        needed = float("-inf")  # the recipe score that would bring this model into the top
        if len(picks) >= top:
            last = sorted((p.score for p in picks), reverse=True)[top - 1]
            needed = (last - score) * 4
            if score + anywhere / 4 < last:  # the pre-scores only fall from here: none of the rest can
                left_out += [(a.name, f"cannot reach the top {top}: at most {s + anywhere / 4:.1f} points, "
                              f"#{top} has {last:.1f}") for s, a, _, _ in pre[index:]]
                break
            best = score + best_possible(facts, rules, fastest, cache) / 4
            if best < last:
                left_out.append((arch.name, f"cannot reach the top {top}: at most {best:.1f} points, "
                                            f"#{top} has {last:.1f}"))
                continue
        result = recommend(facts, rules, registry, top=1, cache=cache, useful_seq=USEFUL_SEQ, best_only=True,
                           at_least=needed)
        if not result.recommendations or not result.recommendations[0].fits:
            if result.viable and not result.recommendations and needed > float("-inf"):
                why_out = f"cannot reach the top {top}: its best recipe would need {needed:.1f} points"
            elif any(why.startswith(f"does not fit at {USEFUL_SEQ}") for _, why in result.dropped):
                why_out = f"no recipe fits at {USEFUL_SEQ} training tokens or more"
            elif any(SLOWER in why for _, why in result.dropped):
                why_out = f"every recipe that fits decodes slower than {facts.latency_ms:g} ms/token"
            elif any(why == ROOMLESS for _, why in result.dropped):
                why_out = ROOMLESS
            else:
                why_out = "no recipe fits"
            left_out.append((arch.name, why_out))
            continue
        rec = result.recommendations[0]
        if rec.candidate.method != "infer" and rec.candidate.setup.seq_len < USEFUL_SEQ:
            left_out.append((arch.name, f"fits only at {rec.candidate.setup.seq_len} training tokens"))
            continue
        speed = decode_speed(facts, rec.candidate)
        if rec.candidate.split_layers is not None and where == "device":
            score -= SPLIT_PENALTY  # weights fit, their KV cache did not: below the models that fit whole
        picks.append(ModelPick(arch, facts, rec, score + rec.score / 4, why, traded(facts, rec), speed))
    picks.sort(key=lambda p: (-p.score, p.arch.name))
    return picks[:top], left_out
