"""The rules engine: a pure function from typed facts (and the installed plugins) to ranked recipes.

1. Rules whose ``when`` holds over the facts fire; their levers say which candidate families to build
   (the diagnosis table), their ``set`` values go into the recipes (the seed settings matrix).
2. Candidates come from the registry's plugin classes (``generate.py``), made to fit (``fitting.py``) and judged
   (``judging.py``).
3. Candidates that do not fit (with a margin) or need what the hardware lacks are dropped, with why.
4. The rest are scored: the lever's rank, quality (published deltas the plugin declares), speed,
   memory headroom, simplicity, and the rules' ``prefer`` points; every point comes with its reason.
Nothing here reads the machine or the disk: the CLI builds ``Facts`` and loads the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunekit.advise.estimate import GB, QUANTS, estimate, fits_bytes, weight_bytes
from tunekit.advise.goals import DEFAULT_LEVERS
from tunekit.advise.hardware import Hardware
from tunekit.advise.rules import candidates as gen
from tunekit.advise.rules import fitting, speed
from tunekit.advise.rules.conditions import evaluate, fill, mentions_candidate, mentions_symptom, must_hold
from tunekit.advise.rules.fitting import no_fit
from tunekit.advise.rules.generate import PackageCache, generate, quantizer_options, serves
from tunekit.advise.rules.judging import Run, judge, keep
from tunekit.advise.rules.scoring import Scored, ceiling, diverse
from tunekit.core.errors import RecipeError
from tunekit.core.model_facts import model_facts
from tunekit.core.records import evolve

if TYPE_CHECKING:
    from tunekit.advise.rules.loader import Rule
    from tunekit.core.arch import ModelArch
    from tunekit.core.registry import Registry




@dataclass(frozen=True)
class Facts:
    """Everything a recommendation depends on; built by the CLI, plain data to the rules."""

    hardware: Hardware
    model: ModelArch
    goal: str = "finetune"
    symptoms: tuple[str, ...] = ()
    seq_len: int | None = None
    batch: int = 1
    context_target: int | None = None
    margin: float = 0.1  # keep 10% of VRAM free (allocator spikes, other processes)
    data: str | None = None
    method: str | None = None  # --method full: the user asks for a full fine-tune
    engine: str | None = None  # --engine hf|vllm|llama.cpp: serve with this one (None: whichever serves it)
    latency_ms: float | None = None  # --latency-ms: a serving recipe decoding slower than this is dropped

    def budget_gb(self) -> float:
        """Usable memory per device: VRAM per GPU, or 80% of RAM on a CPU-only machine."""
        if self.hardware.gpus:
            return self.hardware.vram_gb
        return 0.8 * self.hardware.ram_gb

    def target_context(self) -> int | None:
        """--context; else for the long-context goal twice the trained context; for the context-too-short
        symptom, the trained context itself when it is already long (>= 32k: serve it at full length
        before stretching RoPE past what the model was trained on), else twice it."""
        if self.context_target:
            return self.context_target
        native = self.model.max_context
        if "context-too-short" in self.symptoms:
            return native if native >= 32768 else 2 * native
        return 2 * native if self.goal == "long-context" else None

    def to_dict(self) -> dict[str, Any]:
        arch = self.model
        size = arch.param_count() / 1e9
        gpus = max(self.hardware.gpus, 1)
        # a full fine-tune on several GPUs is sharded: the figure that decides is the per-GPU one
        full, full_8bit, full_paged = (
            estimate(arch, method="full", seq_len=self.seq_len or 2048, gpus=gpus, optimizer=opt,
                     strategy="fsdp" if gpus > 1 else "none")
            for opt in ("adamw", "adamw-8bit", "paged-adamw-8bit"))
        # ZeRO-Offload (fitting.offload_optimizer): DeepSpeed's CPU AdamW, its state in RAM
        offloaded = estimate(arch, method="full", seq_len=self.seq_len or 2048, gpus=gpus, **fitting.ZERO_OFFLOAD)
        offload_fits = bool(self.hardware.gpus) and fitting.ram_holds(self, offloaded) and \
            fits_bytes(offloaded) / GB * (1 + self.margin) <= self.budget_gb()
        return {
            "hardware": self.hardware.to_dict(), "model": model_facts(arch), "goal": self.goal, "method": self.method,
            "engine": self.engine, "latency_ms": self.latency_ms,
            "symptoms": list(self.symptoms), "seq_len": self.seq_len, "batch": self.batch,
            "context_target": self.target_context(), "margin": self.margin, "budget_gb": round(self.budget_gb(), 2),
            "size_class": "small" if size < 10 else "medium" if size < 40 else "large",
            "estimates": {
                "full_finetune_gb": round(full.total_gb, 1),
                "full_finetune_per": "GPU, sharded" if gpus > 1 else "GPU" if self.hardware.gpus else "machine (RAM)",
                "full_finetune_8bit_gb": round(full_8bit.total_gb, 1),
                "full_finetune_paged_8bit_gb": round(full_paged.total_gb, 1),
                # decided like every candidate: on the upper part of the band, the margin kept free
                "full_finetune_fits": min(fits_bytes(full_8bit), fits_bytes(full_paged)) / GB * (1 + self.margin)
                <= self.budget_gb() or offload_fits,
                "full_finetune_offload_gb": round(offloaded.total_gb, 1),
                "full_finetune_offload_ram_gb": round(offloaded.side_bytes["cpu"] * gpus / GB),
                "lora_bf16_gb": round(estimate(arch, method="lora", seq_len=self.seq_len or 2048).total_gb, 1),
                "qlora_4bit_gb": round(estimate(arch, method="qlora", seq_len=self.seq_len or 2048).total_gb, 1),
                "infer_bf16_gb": round(estimate(arch, method="infer", seq_len=self.seq_len or 4096).total_gb, 1),
                "ternary_weights_gb": round(weight_bytes(arch, QUANTS["ternary"]) / GB, 2),
                "bf16_weights_gb": round(weight_bytes(arch, QUANTS["bf16"]) / GB, 2),
                "cpu_train_hours_per_million_tokens": round(speed.cpu_train_hours(arch), 1),
            },
        }


@dataclass
class Recommendation:
    rank: int
    candidate: gen.Candidate
    recipe: dict[str, Any]  # what --write saves (only the keys set)
    resolved: dict[str, Any]  # every default filled in (``ResolvedRecipe.to_dict``)
    fits: bool
    score: float
    reasons: list[str]
    next: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The issue's JSON shape for one recommendation."""
        assert self.candidate.memory is not None
        return {"rank": self.rank, "recipe": self.resolved, "memory": self.candidate.memory.to_dict(),
                "fits": self.fits, "score": round(self.score, 2), "reasons": self.reasons + [
                    f"next: {n}" for n in self.next]}


@dataclass
class Trace:
    """One rule as --explain shows it."""

    rule: str
    fired: bool
    detail: str


@dataclass
class Result:
    facts: dict[str, Any]
    recommendations: list[Recommendation]
    notes: list[str] = field(default_factory=list)
    trace: list[Trace] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    no_fit: dict[str, Any] | None = None
    below_top: list[tuple[str, str]] = field(default_factory=list)
    """Candidates that were kept but ranked below ``--top`` (name, what it is and costs), for ``--explain``."""
    viable: int = 0
    """Candidates left after the drops that need no fitting (best-only mode fits only those that could win)."""

    def to_dict(self) -> dict[str, Any]:
        facts = dict(self.facts)
        facts["diagnosis"] = {"notes": self.notes, "no_fit": self.no_fit,
                              "dropped": [{"candidate": n, "why": w} for n, w in self.dropped]}
        return {"facts": facts, "recommendations": [r.to_dict() for r in self.recommendations]}


# -- 1. rules over facts --------------------------------------------------------------------------


def _fire(rules: list[Rule], facts: dict[str, Any]) -> tuple[list[Rule], list[Trace]]:
    fired, trace = [], []
    for rule in sorted(rules, key=lambda r: -r.priority):
        if mentions_candidate(rule.when):
            trace.append(Trace(rule.id, False, "per-candidate condition (see prefer/drop)"))
            continue
        ok = evaluate(rule.when, facts)
        trace.append(Trace(rule.id, ok, rule.description or str(rule.when)))
        if ok:
            fired.append(rule)
    return fired, trace


def _levers(fired: list[Rule], goal: str) -> list[str]:
    """Levers of the fired symptom rules (the diagnosis wins over the goal), else of the goal rules."""
    levers: list[str] = []
    symptom_rules = [r for r in fired if r.levers and mentions_symptom(r.when)]
    for rule in symptom_rules or fired:  # highest priority first
        for lever in rule.levers:
            if lever not in levers:
                levers.append(lever)
    return levers or list(DEFAULT_LEVERS.get(goal, ("adapter",)))


def _settings(fired: list[Rule]) -> dict[str, dict[str, Any]]:
    """Merge ``set`` values, lowest priority first, so the most specific rule wins."""
    merged: dict[str, dict[str, Any]] = {}
    for rule in reversed(fired):
        for section, values in rule.set.items():
            merged.setdefault(section, {}).update(values)
    return merged


# -- 3 and 4. drop, score, rank --------------------------------------------------------------------


def hub_id(arch: ModelArch) -> str:
    """What ``from_pretrained`` and ``vllm serve`` load: the Hugging Face id when the catalog has one."""
    return arch.aliases[0] if arch.aliases and "/" in arch.aliases[0] else arch.name


def _recipe(facts: Facts, cand: gen.Candidate, settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    arch = facts.model
    data: dict[str, Any] = {"name": f"{arch.name}-{cand.name}",
                            "description": f"tunekit recommend: {facts.goal} {arch.name} ({cand.lever})",
                            "model": {"id": hub_id(arch)}}
    for kind in gen.STAGES:
        if kind in cand.stages:
            data[kind] = cand.stages[kind]
    if cand.method in ("lora", "qlora", "full"):
        from tunekit.core.recipe_model import TrainSection

        train = {k: v for k, v in settings.get("train", {}).items() if k in TrainSection.model_fields}
        if cand.setup.batch < facts.batch:  # the micro-batch traded for accumulation keeps the effective batch
            train["grad_accum"] = int(train.get("grad_accum", 1)) * (facts.batch // cand.setup.batch)
        data["train"] = {**train, "seq_len": cand.setup.seq_len, "batch_size": cand.setup.batch,
                         "gradient_checkpointing": True, **({"data": facts.data} if facts.data else {}),
                         **({"optimizer": cand.setup.optimizer} if cand.setup.optimizer != "adamw" else {})}
        if cand.method == "full":
            data["train"]["lr"] = 2e-5  # full fine-tunes use ~10x lower rates than LoRA (Llama/Alpaca recipes)
        if cand.setup.strategy != "none":
            data["distributed"] = {"strategy": cand.setup.strategy, "gpus": cand.setup.gpus,
                                   **({"offload_optimizer": True} if "optimizer" in cand.setup.offloaded else {}),
                                   **({"offload_params": True} if "weights" in cand.setup.offloaded else {})}
    if cand.export:
        data["output"] = {"formats": ["hf", f"gguf:{cand.export}"]}
    if cand.offload:
        data["model"]["offload"] = cand.offload
    return data


def recipe_file(rec: Recommendation) -> str:
    """The file name ``--write DIR`` gives ``rec`` (inside DIR) and the printed commands use without it."""
    return f"{rec.rank:02d}-{rec.recipe['name']}.yaml"


def _resolve(data: dict[str, Any], registry: Registry) -> dict[str, Any]:
    from tunekit.core.recipe import resolve_stages, validate_data

    return resolve_stages(validate_data(data, source="recommend"), registry, source="recommend").to_dict()


LEVER_KINDS = {"adapter": "adapter", "savings": "adapter", "quantize": "quantizer", "prune": "pruner",
               "context": "context", "sampler": "sampler"}


def _diagnose(facts: Facts, rules: list[Rule]) -> tuple[Run, list[Trace]]:
    fdict = facts.to_dict()
    fired, trace = _fire(rules, fdict)
    return Run(facts, fdict, fired, _levers(fired, facts.goal), _settings(fired)), trace


def _notes(run: Run, registry: Registry) -> list[str]:
    notes = [f"[{r.id}] {fill(r.note, run.fdict)}" for r in run.fired if r.note]
    for lever in run.levers:
        kind = LEVER_KINDS.get(lever)
        if kind and not registry.of(kind):
            notes.append(f"lever '{lever}' has no installed {kind} plugin (see `tunekit plugins`)")
    return notes


def _recommendations(run: Run, kept: list[Scored], registry: Registry, top: int) -> list[Recommendation]:
    recs: list[Recommendation] = []
    nexts = [n for r in run.fired if set(r.levers) & set(run.levers) or not r.levers for n in r.next]
    for points, cand, reasons, fits in diverse(kept, top):
        if len(recs) >= top:
            break
        data = _recipe(run.facts, cand, run.settings)
        try:
            resolved = _resolve(data, registry)
        except RecipeError as exc:
            run.dropped.append((cand.name, f"recipe does not validate: {exc}"))
            continue
        fired_ids = ", ".join(r.id for r in run.fired if cand.lever in r.levers) or f"goal {run.facts.goal}"
        recs.append(Recommendation(rank=len(recs) + 1, candidate=cand, recipe=data, resolved=resolved, fits=fits,
                                   score=points, reasons=[f"lever '{cand.lever}' from {fired_ids}", *reasons],
                                   next=nexts))
    return recs


def _diagnosed(facts: Facts, rules: list[Rule], cache: PackageCache) -> tuple[Run, list[Trace]]:
    """``_diagnose``, once per facts and rules for calls sharing ``cache`` (each call gets its own run)."""
    key = (facts, id(rules))
    if key not in cache.kept:
        cache.kept[key] = (_diagnose(facts, rules), rules)  # the rules kept alive: their id stays theirs
    (run, trace), _ = cache.kept[key]
    return evolve(run, dropped=[], slow=[]), trace


def _any_fine_tune_fits(run: Run, registry: Registry, cache: PackageCache, seq_len: int) -> bool:
    """Whether a fine-tune candidate could fit at ``seq_len`` on some base it may use (``fitting.
    fine_tune_floor_fits``): 16-bit, or a trainable quantizer's variant that no rule drops whatever the
    adapter (a base below 4 bits, unless the rules say otherwise; asked only of bases that fit)."""
    if fitting.fine_tune_floor_fits(run.facts, QUANTS["bf16"], seq_len):
        return True
    known = frozenset({"candidate.method", "candidate.bits", "candidate.quantizer", "candidate.calibration",
                       "candidate.group_size"})
    drops = [d.get("when") for r in run.fired for d in r.drop]
    for inst, _params, _cost in quantizer_options(registry, run.facts, run.settings, trainable_only=True, cache=cache):
        spec = gen.quant_spec_of(inst)
        if not fitting.fine_tune_floor_fits(run.facts, spec, seq_len):
            continue
        cf = {**run.fdict, "candidate": {"method": "qlora", "bits": round(spec.bits, 3), "quantizer": inst.name,
                                          "calibration": inst.requires.calibration,
                                          "group_size": getattr(inst.params, "group_size", None)}}
        if not any(must_hold(when, cf, ("candidate.",), known) for when in drops):
            return True
    return False


def best_possible(facts: Facts, rules: list[Rule], fastest: float, cache: PackageCache | None = None) -> float:
    """The most points ``recommend`` could give any recipe for ``facts``: ``scoring.ceiling`` over the rules
    that fire for them (``fastest``: ``generate.fastest_decode`` of the registry)."""
    run, _ = _diagnosed(facts, rules, cache or PackageCache())
    return ceiling(run.fired, fastest, serves(facts, run.levers), run.fdict)


def recommend(facts: Facts, rules: list[Rule], registry: Registry, *, top: int = 5,
              cache: PackageCache | None = None, useful_seq: int | None = None, best_only: bool = False,
              at_least: float = float("-inf")) -> Result:
    """Rank recipes for ``facts``; pure: the same inputs give the same output. ``cache`` may be shared by
    calls over the same registry (the model ranking asks once per catalog model). With ``useful_seq``
    (the model ranking's shortest useful fine-tune), a training candidate that cannot fit at that length
    even at its leanest is dropped before anything is fitted, and when no fine-tune of the model can, no
    candidate is built. ``best_only`` (with ``top=1``): the
    same first recommendation, judging only the candidates that could beat it (``dropped`` and
    ``below_top`` then list only those judged), and none when no recipe could score ``at_least``."""
    cache = cache or PackageCache()
    run, trace = _diagnosed(facts, rules, cache)
    notes = _notes(run, registry)
    if useful_seq and not serves(facts, run.levers) and not _any_fine_tune_fits(run, registry, cache, useful_seq):
        why = f"no fine-tune can fit at {useful_seq} training tokens with {facts.margin:.0%} kept free"
        return Result(facts=run.fdict, recommendations=[], notes=[*notes, why], trace=trace,
                      dropped=[("every fine-tune", f"does not fit at {useful_seq} training tokens, even at its "
                                                   "leanest on its lightest base")])
    cands = generate(facts, registry, run.levers, run.settings, cache,
                     estimated=not (best_only and top == 1))
    scored = judge(run, cands, registry, best_only=best_only and top == 1, at_least=at_least, useful_seq=useful_seq)
    kept = keep(run, scored)
    recs = _recommendations(run, kept, registry, top)
    if best_only and kept and not recs:  # the best recipe did not validate: the next may not have been judged
        return recommend(facts, rules, registry, top=top, cache=cache, useful_seq=useful_seq, at_least=at_least)
    shown = {r.candidate.name for r in recs} | {name for name, _ in run.dropped}
    # a lever ranked low (dynamic-int8's measured +142% perplexity) still shows under --explain, with its cost
    below = [(cand.name, "; ".join([r for r in reasons if not r.startswith("needs ~")][:2]))
             for _, cand, reasons, _ in kept if cand.name not in shown]
    considered = [cand for _, cand, _, _ in scored]
    missed = None
    if not recs and run.slow:
        name, ms = min(run.slow, key=lambda item: item[1])
        notes.append(f"no recipe that fits decodes within {facts.latency_ms:g} ms/token here: the fastest, {name}, "
                     f"takes ~{ms:.0f} ms/token (a faster GPU, a smaller model or a looser --latency-ms)")
    elif considered and not any(r.fits for r in recs):
        # the commands name a recipe the user has: the leanest of those shown (as --write names it)
        lean = min(recs, key=lambda r: r.candidate.memory.total_gb if r.candidate.memory else float("inf")) \
            if recs else None
        missed = no_fit(facts, [lean.candidate] if lean else considered, recipe_file(lean) if lean else None)
    if missed:
        gpu = missed.get("smallest_gpu")
        notes.append(f"nothing fits {round(facts.budget_gb(), 1):g} GB: the leanest option ({missed['leanest']}) "
                     f"needs ~{missed['needs_gb']} GB (planned ~{missed['planned_gb']} GB, the upper part of the "
                     f"band, + {facts.margin:.0%} margin)"
                     + (f"; the smallest GPU that fits it is {gpu}" if gpu else ""))
    return Result(facts=run.fdict, recommendations=recs, notes=notes, trace=trace, dropped=run.dropped, no_fit=missed,
                  viable=run.viable,
                  below_top=below)
