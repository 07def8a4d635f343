"""The rules engine: a pure function from typed facts (and the installed plugins) to ranked recipes.

1. Rules whose ``when`` holds over the facts fire; their levers say which candidate families to build
   (the diagnosis table), their ``set`` values go into the recipes (the seed settings matrix).
2. Candidates come from the registry's plugin classes (``candidates.py``), each with a memory estimate.
3. Candidates that do not fit (with a margin) or need what the hardware lacks are dropped, with why.
4. The rest are scored: the lever's rank, quality (published deltas the plugin declares), speed,
   memory headroom, simplicity, and the rules' ``prefer`` points; every point comes with its reason.
Nothing here reads the machine or the disk: the CLI builds ``Facts`` and loads the rules.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tunekit.errors import RecipeError
from tunekit.estimate import GB, QUANTS, Setup, estimate, max_seq_len, weight_bytes
from tunekit.hardware import Hardware, smallest_gpu_fitting
from tunekit.model_facts import model_facts
from tunekit.rules import candidates as gen
from tunekit.rules.conditions import evaluate, fill, mentions_candidate, mentions_symptom

if TYPE_CHECKING:
    from tunekit.arch import ModelArch
    from tunekit.kinds import Plugin
    from tunekit.plugins import Registry
    from tunekit.rules.loader import Rule

GOALS = ("finetune", "serve", "long-context", "compress")
DEFAULT_LEVERS = {"finetune": ("adapter",), "serve": ("as-is", "quantize"), "long-context": ("context",),
                  "compress": ("quantize", "prune")}
LEVER_POINTS = (6.0, 3.0, 1.0)  # first, second, later lever named by the fired rules


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

    def budget_gb(self) -> float:
        """Usable memory per device: VRAM per GPU, or 80% of RAM on a CPU-only machine."""
        if self.hardware.gpus:
            return self.hardware.vram_gb
        return 0.8 * self.hardware.ram_gb

    def target_context(self) -> int | None:
        """--context, or twice the trained context for the long-context goal."""
        if self.context_target:
            return self.context_target
        return 2 * self.model.max_context if self.goal == "long-context" else None

    def to_dict(self) -> dict[str, Any]:
        arch = self.model
        size = arch.param_count() / 1e9
        return {
            "hardware": self.hardware.to_dict(), "model": model_facts(arch), "goal": self.goal,
            "symptoms": list(self.symptoms), "seq_len": self.seq_len, "batch": self.batch,
            "context_target": self.target_context(), "margin": self.margin, "budget_gb": round(self.budget_gb(), 2),
            "size_class": "small" if size < 10 else "medium" if size < 40 else "large",
            "estimates": {
                "full_finetune_gb": round(estimate(arch, method="full", seq_len=self.seq_len or 2048).total_gb, 1),
                "lora_bf16_gb": round(estimate(arch, method="lora", seq_len=self.seq_len or 2048).total_gb, 1),
                "qlora_4bit_gb": round(estimate(arch, method="qlora", seq_len=self.seq_len or 2048).total_gb, 1),
                "infer_bf16_gb": round(estimate(arch, method="infer", seq_len=self.seq_len or 4096).total_gb, 1),
                "ternary_weights_gb": round(weight_bytes(arch, QUANTS["ternary"]) / GB, 2),
                "bf16_weights_gb": round(weight_bytes(arch, QUANTS["bf16"]) / GB, 2),
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


# -- 2. candidates ---------------------------------------------------------------------------------


def _pick(registry: Registry, kind: str, preferred: str) -> type[Plugin] | None:
    classes = registry.classes.get(kind, {})
    return classes.get(preferred) or (next(iter(classes.values())) if classes else None)


def _train_setup(facts: Facts, settings: dict[str, dict[str, Any]]) -> Setup:
    train = settings.get("train", {})
    return Setup(method="lora", seq_len=facts.seq_len or int(train.get("seq_len", 2048)),
                 batch=facts.batch or int(train.get("batch_size", 1)), grad_ckpt=True,
                 gpus=max(facts.hardware.gpus, 1))


def _infer_setup(facts: Facts, settings: dict[str, dict[str, Any]], seq: int | None = None) -> Setup:
    if facts.goal == "long-context":
        seq = seq or facts.target_context()
    ctx = settings.get("serve", {}).get("context", 4096)
    return Setup(method="infer", seq_len=seq or facts.seq_len or min(int(ctx), facts.model.max_context),
                 batch=facts.batch, gpus=max(facts.hardware.gpus, 1))


def _quantizer_options(registry: Registry, arch: ModelArch, settings: dict[str, dict[str, Any]],
                       trainable_only: bool) -> list[tuple[Any, dict[str, Any], float]]:
    out = []
    for cls in registry.classes.get("quantizer", {}).values():
        if trainable_only and not cls.trainable:  # type: ignore[attr-defined]
            continue
        variants = gen.quantizer_variants(cls, arch, settings.get("quantizer", {}))  # type: ignore[arg-type]
        default_bits = float(variants[0][0].bits_per_weight()) if variants else None
        for inst, params in variants:
            if trainable_only and gen.memory_bits(inst) >= 16:  # a base that saves no memory is no QLoRA
                continue
            out.append((inst, params, gen.quality_cost(inst, default_bits, float(inst.bits_per_weight()))))
    return out


#: Missing packages per plugin class, asked once per ``recommend`` call (it asks ~100 times per run, and
#: each ``find_spec`` of an absent package walks all of ``sys.path``).
_missing: dict[type[Plugin], list[str]] = {}


def _require(cand: gen.Candidate, cls: type[Plugin], facts: Facts) -> None:
    """Record what the hardware lacks (drops the candidate) and which packages are missing (a reason)."""
    cand.needs += gen.requirement_problems(cls, facts.hardware.to_dict())
    if cls not in _missing:
        _missing[cls] = cls.requires.missing_packages()
    cand.missing_packages += _missing[cls]


def _with_quant(cand: gen.Candidate, inst: Any, params: dict[str, Any], cost: float) -> gen.Candidate:
    spec = gen.quant_spec_of(inst)
    cand.stages["quantizer"] = {"method": inst.name, **params}
    cand.setup = replace(cand.setup, quant=spec, method="qlora" if cand.setup.method in ("lora", "qlora")
                         else cand.setup.method)
    cand.method = cand.setup.method
    cand.quality_cost += cost
    cand.speedup *= float(inst.effects.speedup)
    cand.calibration = cand.calibration or inst.requires.calibration
    cand.on_load = bool(getattr(inst, "on_load", False))
    cand.group_size = getattr(inst.params, "group_size", None)
    return cand


def _adapter_candidates(facts: Facts, registry: Registry, settings: dict[str, dict[str, Any]],
                        lever: str, only_default_adapter: bool = False) -> list[gen.Candidate]:
    arch, out = facts.model, []
    adapters = list(registry.classes.get("adapter", {}).values())
    if only_default_adapter:
        chosen = _pick(registry, "adapter", "lora")
        adapters = [chosen] if chosen else []
    quants: list[Any] = [None, *_quantizer_options(registry, arch, settings, trainable_only=True)]
    if lever == "quantize":
        quants = [q for q in quants if q is not None]
    for cls in adapters:
        inst, params = gen.instantiate(cls, settings.get("adapter", {}))
        trainable = gen.adapter_trainable(inst, arch)  # type: ignore[arg-type]
        for q in quants:
            suffix = f"-{q[0].name}-{q[0].bits_per_weight():.3g}bit" if q else "-bf16"
            label = f"{'q' if q else ''}{cls.name}{suffix}"
            cand = gen.Candidate(name=label, lever=lever, method="lora", stages={"adapter": {"method": cls.name,
                                 **params}}, setup=replace(_train_setup(facts, settings), trainable_params=trainable),
                                 quality_cost=float(cls.effects.quality_cost), notes=list(cls.effects.notes))
            _require(cand, cls, facts)
            if q is not None:
                _with_quant(cand, *q)
                _require(cand, type(q[0]), facts)
            out.append(cand)
    return out


def _serve_candidates(facts: Facts, registry: Registry, settings: dict[str, dict[str, Any]],
                      lever: str) -> list[gen.Candidate]:
    arch, out = facts.model, []
    if lever == "as-is":
        seq = facts.target_context() if facts.goal == "long-context" else None
        return [gen.Candidate(name="bf16", lever=lever, method="infer", stages={},
                              setup=_infer_setup(facts, settings, seq=seq))]
    if lever == "quantize":
        for inst, params, cost in _quantizer_options(registry, arch, settings, trainable_only=False):
            cand = gen.Candidate(name=f"{inst.name}-{inst.bits_per_weight():.3g}bit", lever=lever, method="infer",
                                 stages={}, setup=_infer_setup(facts, settings))
            _with_quant(cand, inst, params, cost)
            _require(cand, type(inst), facts)
            cand.notes += list(inst.effects.notes)
            out.append(cand)
    elif lever == "prune":
        for cls in registry.classes.get("pruner", {}).values():
            inst, params = gen.instantiate(cls, settings.get("pruner", {}))
            cand = gen.Candidate(name=f"prune-{cls.name}", lever=lever, method="infer",
                                 stages={"pruner": {"method": cls.name, **params}}, setup=_infer_setup(facts, settings),
                                 quality_cost=float(cls.effects.quality_cost), speedup=float(cls.effects.speedup),
                                 notes=[*cls.effects.notes, "zeros are stored densely: memory only drops once "
                                        "exported to a sparse format (2:4 kernels need CUDA)"])
            _require(cand, cls, facts)
            out.append(cand)
    elif lever == "context":
        target = facts.target_context() or 2 * arch.max_context
        factor = gen.context_factor(arch, target)
        four_bit = [q for q in _quantizer_options(registry, arch, settings, trainable_only=False)
                    if q[0].bits_per_weight() <= 4.6]
        for cls in registry.classes.get("context", {}).values():
            inst, params = gen.instantiate(cls, {**settings.get("context", {}), "factor": factor})
            base = gen.Candidate(name=f"{cls.name}-x{factor:g}", lever=lever, method="infer",
                                 stages={"context": {"method": cls.name, **params}},
                                 setup=_infer_setup(facts, settings, seq=target),
                                 quality_cost=float(cls.effects.quality_cost), notes=list(cls.effects.notes))
            _require(base, cls, facts)
            out.append(base)
            if four_bit:  # the long context's KV cache often needs the weights' memory back
                best = min(four_bit, key=lambda q: q[2])
                quantized = copy.deepcopy(base)
                quantized.name = f"{cls.name}-x{factor:g}+{best[0].name}"
                out.append(_with_quant(quantized, *best))
    elif lever == "sampler":
        out.append(gen.Candidate(name="sampler", lever=lever, method="infer", stages={},
                                 setup=_infer_setup(facts, settings), keep_if_unfit=True))
    return out


def _generate(facts: Facts, registry: Registry, levers: list[str],
              settings: dict[str, dict[str, Any]]) -> list[gen.Candidate]:
    out: list[gen.Candidate] = []
    for lever in levers:
        if lever == "none" or (lever == "prune" and facts.goal == "finetune"):
            continue
        if lever == "adapter" or (lever == "quantize" and facts.goal == "finetune"):
            out += _adapter_candidates(facts, registry, settings, lever, only_default_adapter=lever == "quantize")
        else:
            out += _serve_candidates(facts, registry, settings, lever)
    sampler = settings.get("sampler")
    sampler_cls = _pick(registry, "sampler", "sampling")
    for cand in out:
        if sampler and sampler_cls is not None and (cand.lever == "sampler" or facts.goal == "serve"):
            cand.stages["sampler"] = {"method": sampler_cls.name, **(gen.plugin_params(sampler_cls, sampler) or {})}
        gen.estimate_candidate(facts.model, cand)
    return out


# -- 3 and 4. drop, score, rank --------------------------------------------------------------------


def _recipe(facts: Facts, cand: gen.Candidate, settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    arch = facts.model
    data: dict[str, Any] = {"name": f"{arch.name}-{cand.name}",
                            "description": f"tunekit recommend: {facts.goal} {arch.name} ({cand.lever})",
                            "model": {"id": arch.name}}
    for kind in gen.STAGES:
        if kind in cand.stages:
            data[kind] = cand.stages[kind]
    if cand.method in ("lora", "qlora"):
        from tunekit.recipe_model import TrainSection

        train = {k: v for k, v in settings.get("train", {}).items() if k in TrainSection.model_fields}
        data["train"] = {**train, "seq_len": cand.setup.seq_len, "batch_size": cand.setup.batch,
                         "gradient_checkpointing": True, **({"data": facts.data} if facts.data else {})}
        if cand.setup.strategy != "none":
            data["distributed"] = {"strategy": cand.setup.strategy, "gpus": cand.setup.gpus}
    return data


def _resolve(data: dict[str, Any], registry: Registry) -> dict[str, Any]:
    from tunekit.recipe import resolve_stages, validate_data

    return resolve_stages(validate_data(data, source="recommend"), registry, source="recommend").to_dict()


def _score(facts: Facts, cand: gen.Candidate, levers: list[str], fired: list[Rule],
           fdict: dict[str, Any]) -> tuple[float, list[str]]:
    assert cand.memory is not None
    reasons: list[str] = []
    index = levers.index(cand.lever) if cand.lever in levers else len(levers)
    score = LEVER_POINTS[min(index, len(LEVER_POINTS) - 1)]
    budget = facts.budget_gb()
    reasons.append(f"needs ~{cand.memory.total_gb:.1f} GB (band {cand.memory.low / 1e9:.1f}-"
                   f"{cand.memory.high / 1e9:.1f}) of {budget:.0f} GB per device")
    quality = -100 * cand.quality_cost
    if cand.quality_cost:
        reasons.append(f"expected quality cost +{100 * cand.quality_cost:.1f}% perplexity (declared by the plugin)")
    if cand.method == "qlora":
        # the declared cost is the quantized model's; an adapter trained on top recovers most of it
        # (QLoRA paper: NF4 + LoRA matches 16-bit fine-tuning), so a base's cost weighs 0.3 in training
        quality *= 0.3
    score += max(quality, -8.0)
    if budget > 0:
        score += 3.0 * max(0.0, 1 - cand.memory.total_gb / budget)
    # decode speed counts for serving; in training only a slowdown counts (bnb int8), a fast decode kernel
    # does not make the backward pass through dequantized weights faster
    speed = cand.speedup if cand.method == "infer" else min(cand.speedup, 1.0)
    score += 2.0 * (speed - 1)
    if cand.speedup != 1:
        reasons.append(f"decode speed x{cand.speedup:.2g} vs 16-bit (declared by the plugin)")
    missing = sorted(set(cand.missing_packages))
    if missing:
        score -= 0.5
        reasons.append(f"needs packages not installed here: {', '.join(missing)} (see `tunekit plugins`)")
    if cand.calibration:
        score -= 1.0
        reasons.append("needs calibration text (a few hundred samples) and a GPTQ/AWQ-style pass")
    score -= 0.3 * len([k for k in cand.stages if k != "sampler"])
    ruled = []
    for rule in fired:
        for item in rule.prefer:
            if evaluate(item.get("when"), fdict):
                score += float(item.get("points", 0))
                ruled.append(f"[{rule.id}] {item.get('reason', '')}".strip())
    reasons[1:1] = ruled  # the rules' reasons right after the memory line: the table shows them first
    for note in cand.notes:
        reasons.append(note)
    return score, reasons


def _no_fit(facts: Facts, cands: list[gen.Candidate]) -> dict[str, Any]:
    """The smallest single GPU that would fit the leanest candidate, and the multi-GPU/offload options."""
    lean = min(cands, key=lambda c: c.memory.total_gb if c.memory else float("inf"))
    assert lean.memory is not None
    need = lean.memory.total_gb * (1 + facts.margin)
    gpu = smallest_gpu_fitting(need)
    out: dict[str, Any] = {"leanest": lean.name, "needs_gb": round(need, 1),
                           "smallest_gpu": gpu.name if gpu else None,
                           "smallest_gpu_vram_gb": gpu.vram_gb if gpu else None}
    per_gpu = facts.hardware.vram_gb or (gpu.vram_gb if gpu else 80.0)
    recipe = f"{facts.model.name}-{lean.name}.yaml"
    for n in (2, 4, 8, 16, 32, 64):
        if lean.method == "infer":
            est = estimate(facts.model, lean.setup, gpus=n)
        else:
            est = estimate(facts.model, lean.setup, gpus=n, strategy="fsdp")
        if est.total_gb * (1 + facts.margin) <= per_gpu:
            out["multi_gpu"] = {"gpus": n, "per_gpu_gb": round(est.total_gb, 1), "strategy": "fsdp"
                                if lean.method != "infer" else "tensor-parallel"}
            if lean.method == "infer":
                hub = facts.model.aliases[0] if facts.model.aliases else facts.model.name
                out["commands"] = [f"vllm serve {hub} --tensor-parallel-size {n}"]
            else:
                out["commands"] = [
                    f"tunekit launch {recipe} --gpus {n} --strategy fsdp",
                    f"accelerate launch --num_processes {n} --use_fsdp --fsdp_sharding_strategy FULL_SHARD "
                    f"-m tunekit apply {recipe} --set distributed.strategy=fsdp --set distributed.gpus={n}",
                    f"accelerate launch --num_processes {n} --use_deepspeed --zero_stage 3 -m tunekit apply {recipe} "
                    f"--set distributed.strategy=zero3 --set distributed.gpus={n}",
                ]
            break
    if lean.method != "infer":
        off = estimate(facts.model, lean.setup, strategy="zero3", offloaded=frozenset({"optimizer", "weights"}))
        out["cpu_offload"] = {"per_gpu_gb": round(off.total_gb, 1),
                              "cpu_ram_gb": off.assumptions["cpu_offload_gb"],
                              "how": "DeepSpeed ZeRO-3 with offload_param/offload_optimizer: cpu "
                                     "(distributed.offload_params/offload_optimizer), slow but fits"}
    return out


def _diverse(kept: list[tuple[float, gen.Candidate, list[str], bool]],
             limit: int) -> list[tuple[float, gen.Candidate, list[str], bool]]:
    """Greedy re-ranking: each pick costs the others with the same quantizer 1 point (same adapter 0.5),
    so the top picks show different options (LoRA, QLoRA 8-bit, QLoRA 4-bit, DoRA...) rather than one five times.
    The picks come first (at most ``limit``), then the rest in score order."""
    keys = {id(c): ((c.stages.get("quantizer") or {}).get("method") or "bf16",
                    (c.stages.get("adapter") or {}).get("method")) for _, c, _, _ in kept}
    pool = list(kept)
    out: list[tuple[float, gen.Candidate, list[str], bool]] = []
    while pool and len(out) < limit:
        def adjusted(item: tuple[float, gen.Candidate, list[str], bool]) -> float:
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


def _shard(facts: Facts, cand: gen.Candidate, registry: Registry) -> str | None:
    """With several GPUs, a training candidate that does not fit on one is sharded (FSDP full_shard).

    A 4-bit base sharded by FSDP needs its packed weights stored in the compute dtype (bnb
    ``quant_storage``, the route transformers and PEFT document): set when the quantizer has the field."""
    assert cand.memory is not None
    gpus = facts.hardware.gpus
    if gpus < 2 or cand.method == "infer" or cand.memory.total_gb * (1 + facts.margin) <= facts.budget_gb():
        return None
    cand.setup = replace(cand.setup, strategy="fsdp", gpus=gpus)
    quant = cand.stages.get("quantizer")
    if quant is not None:
        cls = registry.classes["quantizer"].get(quant["method"])
        extra = gen.plugin_params(cls, {"quant_storage": "bfloat16"}) if cls is not None else None
        quant.update(extra or {})
    gen.estimate_candidate(facts.model, cand)
    return f"sharded with FSDP over {gpus} GPUs (weights, gradients and optimizer state / {gpus}); " \
           f"run it with `tunekit launch RECIPE --gpus {gpus}`"


def _auto_fit(facts: Facts, cand: gen.Candidate) -> str | None:
    """Without --seq-len, shorten the sequence until the candidate fits (down to 512 / 2048 tokens);
    when even that does not fit, leave it at the floor so the near miss shows its leanest configuration."""
    assert cand.memory is not None
    budget = facts.budget_gb() / (1 + facts.margin)
    if facts.seq_len is not None or cand.memory.total_gb <= budget or facts.goal == "long-context" \
            or cand.lever == "context":
        return None
    floor = min(512 if cand.method != "infer" else 2048, cand.setup.seq_len)
    best = max_seq_len(facts.model, cand.setup, budget, limit=cand.setup.seq_len)
    chosen = max(floor, best // 256 * 256)
    cand.setup = replace(cand.setup, seq_len=chosen)
    gen.estimate_candidate(facts.model, cand)
    if best < floor:
        return f"does not fit even at {chosen} tokens (~{cand.memory.total_gb:.1f} GB)"
    return f"seq_len lowered to {chosen} tokens to fit (pass --seq-len to choose)"


def recommend(facts: Facts, rules: list[Rule], registry: Registry, *, top: int = 5) -> Result:
    """Rank recipes for ``facts``; pure: the same inputs give the same output."""
    _missing.clear()
    fdict = facts.to_dict()
    fired, trace = _fire(rules, fdict)
    levers = _levers(fired, facts.goal)
    settings = _settings(fired)
    notes = [f"[{r.id}] {fill(r.note, fdict)}" for r in fired if r.note]
    nexts = [n for r in fired if set(r.levers) & set(levers) or not r.levers for n in r.next]
    cands = _generate(facts, registry, levers, settings)
    kinds = {"adapter": "adapter", "quantize": "quantizer", "prune": "pruner", "context": "context",
             "sampler": "sampler"}
    for lever in levers:
        if lever in kinds and not registry.classes.get(kinds[lever]):
            notes.append(f"lever '{lever}' has no installed {kinds[lever]} plugin (see `tunekit plugins`)")
    budget = facts.budget_gb()
    scored: list[tuple[float, gen.Candidate, list[str], bool]] = []
    dropped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for cand in cands:
        if cand.name in seen:  # the same recipe reached through two levers: keep the first (higher) lever
            continue
        seen.add(cand.name)
        if cand.needs:
            dropped.append((cand.name, "; ".join(cand.needs)))
            continue
        fitted = _shard(facts, cand, registry) or _auto_fit(facts, cand)
        assert cand.memory is not None
        cf = {**fdict, "candidate": cand.facts()}
        why_drop = [f"[{r.id}] {d.get('reason', '')}" for r in fired for d in r.drop if evaluate(d.get("when"), cf)]
        if why_drop:
            dropped.append((cand.name, "; ".join(why_drop)))
            continue
        fits = cand.memory.total_gb * (1 + facts.margin) <= budget
        score, reasons = _score(facts, cand, levers, fired, cf)
        if fitted:
            reasons.insert(1, fitted)
        scored.append((score, cand, reasons, fits))
    any_fit = any(fits or cand.keep_if_unfit for _, cand, _, fits in scored)
    kept = []
    for item in scored:
        score, cand, reasons, fits = item
        if fits or cand.keep_if_unfit:
            kept.append(item)
        elif any_fit:
            assert cand.memory is not None
            dropped.append((cand.name, f"needs ~{cand.memory.total_gb:.1f} GB + {facts.margin:.0%} margin; "
                                       f"{budget:.1f} GB available"))
        else:  # nothing fits: rank the near misses, leanest first, and say what hardware would do
            assert cand.memory is not None
            kept.append((score - cand.memory.total_gb, cand, reasons, False))
    kept.sort(key=lambda item: (-item[0], item[1].memory.total_gb if item[1].memory else 0, item[1].name))
    recs: list[Recommendation] = []
    for score, cand, reasons, fits in _diverse(kept, top):
        if len(recs) >= top:
            break
        data = _recipe(facts, cand, settings)
        try:
            resolved = _resolve(data, registry)
        except RecipeError as exc:
            dropped.append((cand.name, f"recipe does not validate: {exc}"))
            continue
        fired_ids = ", ".join(r.id for r in fired if cand.lever in r.levers) or f"goal {facts.goal}"
        recs.append(Recommendation(rank=len(recs) + 1, candidate=cand, recipe=data, resolved=resolved, fits=fits,
                                   score=score, reasons=[f"lever '{cand.lever}' from {fired_ids}", *reasons],
                                   next=nexts))
    considered = [cand for _, cand, _, _ in scored]
    no_fit = _no_fit(facts, considered) if considered and not any(r.fits for r in recs) else None
    if no_fit:
        gpu = no_fit.get("smallest_gpu")
        notes.append(f"nothing fits {budget:.0f} GB: the leanest option ({no_fit['leanest']}) needs "
                     f"~{no_fit['needs_gb']} GB" + (f"; the smallest GPU that fits it is {gpu}" if gpu else ""))
    return Result(facts=fdict, recommendations=recs, notes=notes, trace=trace, dropped=dropped, no_fit=no_fit)
