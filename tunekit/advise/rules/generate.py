"""Candidate generation: the levers the fired rules chose, turned into candidate recipes with estimates.

Every function returns new candidates (``dataclasses.replace``), never changes one it was given, so a
candidate reached through two levers cannot carry the other's edits. What is costly to ask (which
packages a plugin misses) is cached in a ``PackageCache`` the caller makes for one ``recommend`` call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunekit.advise.estimate import QuantSpec, Setup
from tunekit.advise.rules import candidates as gen
from tunekit.advise.rules import engines
from tunekit.core.kinds import Requirements
from tunekit.core.records import evolve

if TYPE_CHECKING:
    from tunekit.advise.rules.engine import Facts
    from tunekit.core.kinds import Plugin
    from tunekit.core.registry import Registry

Settings = dict[str, dict[str, Any]]
QuantOption = tuple[Any, dict[str, Any], float]  # (quantizer instance, params it was built with, quality cost)

#: The llama.cpp file types offered for serving on a CPU or split CPU/GPU: the 4-bit K-quant, the llama.cpp
#: README's recommended size/quality trade (Llama-3-8B: +0.175 perplexity vs Q8_0 +0.003, a third the size),
#: and the 3-bit one for when 4 bits do not fit (+0.657: large models tolerate it; the quality cost, from
#: the same table, ranks it below Q4_K_M whenever both fit).
GGUF_SERVE_TYPES = ("q4_k_m", "q3_k_m")
#: Context scaled beyond this factor without a fine-tune loses quality (YaRN and PI papers: both fine-tune
#: briefly at the new length; PI's untuned 2x-4x extrapolation degrades).
UNTUNED_CONTEXT_FACTOR = 2.0
#: Decode speed-up declared for the GGUF 4-bit route, as the GPTQ/AWQ plugins declare for 4 bits
GGUF_SPEEDUP = 1.5


@dataclass
class PackageCache:
    """Missing packages per plugin class, asked once per ``recommend`` call (``find_spec`` of an absent
    package walks all of ``sys.path``, and a call asks ~100 times); shared by the model ranking's calls,
    it also keeps each model's diagnosis (``engine.best_possible`` asks it before ``recommend`` does) and
    the quantizer variants (``quantizer_options``), in ``kept``."""

    missing: dict[type[Plugin], list[str]] = field(default_factory=dict)
    kept: dict[Any, Any] = field(default_factory=dict)
    absent: dict[str, bool] = field(default_factory=dict)  # import name -> not installed (plugins share many)

    def of(self, cls: type[Plugin]) -> list[str]:
        if cls not in self.missing:
            for name in cls.requires.packages:
                if name not in self.absent:
                    self.absent[name] = bool(Requirements(packages=(name,)).missing_packages())
            self.missing[cls] = [name for name in cls.requires.packages if self.absent[name]]
        return self.missing[cls]


def pick(registry: Registry, kind: str, preferred: str) -> type[Plugin] | None:
    classes = registry.of(kind)
    return classes.get(preferred) or (next(iter(classes.values())) if classes else None)


def train_setup(facts: Facts, settings: Settings, method: str = "lora") -> Setup:
    train = settings.get("train", {})
    return Setup(method=method, seq_len=facts.seq_len or int(train.get("seq_len", 2048)),
                 batch=facts.batch or int(train.get("batch_size", 1)), grad_ckpt=True,
                 gpus=max(facts.hardware.gpus, 1))


def infer_setup(facts: Facts, settings: Settings, seq: int | None = None) -> Setup:
    """Serving at the context asked: a stretch target for long-context; else ``--context``, up to what the
    model reads natively (going past it is the long-context goal's RoPE scaling), before the default."""
    if facts.goal == "long-context" or "context-too-short" in facts.symptoms:
        seq = seq or facts.target_context()
    elif facts.context_target:
        seq = seq or min(facts.context_target, facts.model.max_context)
    ctx = settings.get("serve", {}).get("context", 4096)
    return Setup(method="infer", seq_len=seq or facts.seq_len or min(int(ctx), facts.model.max_context),
                 batch=facts.batch, gpus=max(facts.hardware.gpus, 1), engine=facts.engine or "vllm")


def quantizer_options(registry: Registry, facts: Facts, settings: Settings, trainable_only: bool,
                      cache: PackageCache | None = None) -> list[QuantOption]:
    """Each quantizer's variants (instances, their params, quality cost). They depend on the model only
    through which group sizes divide its widths (their gcd), so ``cache`` keeps them across models."""
    widths = (facts.model.hidden, facts.model.moe_intermediate or facts.model.intermediate,
              facts.model.heads * facts.model.head_dim)
    key = ("quantizer_options", trainable_only, math.gcd(*widths), repr(sorted(settings.get("quantizer", {}).items())))
    if cache is not None and key in cache.kept:
        return list(cache.kept[key])
    out = _quantizer_options(registry, facts, settings, trainable_only)
    if cache is not None:
        cache.kept[key] = out
    return list(out)


def _quantizer_options(registry: Registry, facts: Facts, settings: Settings, trainable_only: bool) -> list[QuantOption]:
    out = []
    for cls in registry.of("quantizer").values():
        if trainable_only and not cls.trainable:  # type: ignore[attr-defined]
            continue
        variants = gen.quantizer_variants(cls, facts.model, settings.get("quantizer", {}))  # type: ignore[arg-type]
        default_bits = float(variants[0][0].bits_per_weight()) if variants else None
        for inst, params in variants:
            # a quantizer whose output saves no memory (RTN's fake-quant: rounded weights kept in 16 bits, a
            # quality measurement) is no QLoRA base and no way to serve: as-is reads the same bytes, unrounded
            if gen.memory_bits(inst) >= 16:
                continue
            out.append((inst, params, gen.quality_cost(inst, default_bits, float(inst.bits_per_weight()))))
    return out


def require(cand: gen.Candidate, cls: type[Plugin], facts: Facts, cache: PackageCache) -> gen.Candidate:
    """What the hardware lacks (drops the candidate) and which packages are missing (a reason)."""
    problems, missing = gen.requirement_problems(cls, facts.hardware), cache.of(cls)
    if not problems and not missing:
        return cand
    return evolve(cand, needs=[*cand.needs, *problems], missing_packages=[*cand.missing_packages, *missing])


def with_quant(cand: gen.Candidate, inst: Any, params: dict[str, Any], cost: float, name: str | None = None
               ) -> gen.Candidate:
    method = "qlora" if cand.setup.method in ("lora", "qlora") else cand.setup.method
    return evolve(cand, name=name or cand.name, stages={**cand.stages, "quantizer": {"method": inst.name, **params}},
                   setup=evolve(cand.setup, quant=gen.quant_spec_of(inst), method=method), method=method,
                   quality_cost=cand.quality_cost + cost, speedup=cand.speedup * float(inst.effects.speedup),
                   calibration=cand.calibration or inst.requires.calibration,
                   on_load=bool(getattr(inst, "on_load", False)), group_size=getattr(inst.params, "group_size", None))


def adapter_candidates(facts: Facts, registry: Registry, settings: Settings, lever: str,
                       cache: PackageCache) -> list[gen.Candidate]:
    """Each adapter on a 16-bit base and on each trainable quantized base; the ``quantize`` lever keeps
    only the default adapter on quantized bases, ``savings`` only the default adapter with an 8-bit
    optimizer (the memory savers tried before a method changes)."""
    arch, out = facts.model, []
    adapters = list(registry.of("adapter").values())
    if lever in ("quantize", "savings"):
        chosen = pick(registry, "adapter", "lora")
        adapters = [chosen] if chosen else []
    quants: list[QuantOption | None] = [None, *quantizer_options(registry, facts, settings, trainable_only=True,
                                                                  cache=cache)]
    if lever == "quantize":
        quants = [q for q in quants if q is not None]
    elif lever == "savings":
        quants = [None]
    for cls in adapters:
        inst, params = gen.instantiate(cls, settings.get("adapter", {}))
        trainable = gen.adapter_trainable(inst, arch)  # type: ignore[arg-type]
        setup = evolve(train_setup(facts, settings), trainable_params=trainable)
        if lever == "savings":
            setup = evolve(setup, optimizer="adamw-8bit")
        for q in quants:
            suffix = f"-{q[0].name}-{q[0].bits_per_weight():.3g}bit" if q else "-bf16"
            label = f"{'q' if q else ''}{cls.name}{suffix}" + ("-8bit-adam" if lever == "savings" else "")
            cand = gen.Candidate(name=label, lever=lever, method="lora", stages={"adapter": {"method": cls.name,
                                 **params}}, setup=setup, quality_cost=float(cls.effects.quality_cost),
                                 notes=list(cls.effects.notes))
            cand = require(cand, cls, facts, cache)
            if q is not None:
                cand = require(with_quant(cand, *q), type(q[0]), facts, cache)
            out.append(cand)
    return out


def full_candidates(facts: Facts, settings: Settings) -> list[gen.Candidate]:
    """Every weight trained with AdamW (fitting shards it over the GPUs and pages the optimizer if needed)."""
    base = train_setup(facts, settings, method="full")
    return [gen.Candidate(name="full", lever="full", method="full", stages={}, setup=base,
                          notes=["trains every weight: the most capacity to learn, and to forget (mix general data)"])]


def serve_candidates(facts: Facts, registry: Registry, settings: Settings, lever: str,
                     cache: PackageCache) -> list[gen.Candidate]:
    if lever == "as-is":
        return [gen.Candidate(name="bf16", lever=lever, method="infer", stages={}, setup=infer_setup(facts, settings))]
    if lever == "quantize":
        out = []
        for inst, params, cost in quantizer_options(registry, facts, settings, trainable_only=False, cache=cache):
            cand = gen.Candidate(name=f"{inst.name}-{inst.bits_per_weight():.3g}bit", lever=lever, method="infer",
                                 stages={}, setup=infer_setup(facts, settings), notes=list(inst.effects.notes))
            out.append(require(with_quant(cand, inst, params, cost), type(inst), facts, cache))
        return out + gguf_candidates(facts, registry, settings, lever, cache)
    if lever == "prune":
        out = []
        for cls in registry.of("pruner").values():
            inst, params = gen.instantiate(cls, settings.get("pruner", {}))
            cand = gen.Candidate(name=f"prune-{cls.name}", lever=lever, method="infer",
                                 stages={"pruner": {"method": cls.name, **params}}, setup=infer_setup(facts, settings),
                                 quality_cost=float(cls.effects.quality_cost), speedup=float(cls.effects.speedup),
                                 notes=[*cls.effects.notes, "zeros are stored densely: memory only drops once "
                                        "exported to a sparse format (2:4 kernels need CUDA)"])
            out.append(require(cand, cls, facts, cache))
        return out
    if lever == "context":
        return context_candidates(facts, registry, settings, cache)
    if lever == "sampler":
        # decoding controls ride on a serving base that fits: the 16-bit weights, else (fallbacks, kept only
        # then) each quantized base; a sampler change is never answered with "buy a bigger GPU"
        controls = ", ".join(f"{k} {v}" for k, v in settings.get("sampler", {}).items())
        said = [f"decoding controls: {controls} (wherever it is served)"] if controls else []
        quantized = serve_candidates(facts, registry, settings, "quantize", cache)
        return [gen.Candidate(name="sampler", lever=lever, method="infer", stages={},
                              setup=infer_setup(facts, settings), warnings=said),
                *(evolve(c, name=f"sampler-{c.name}", lever=lever, fallback=True, warnings=[*said, *c.warnings])
                  for c in quantized)]
    return []


def gguf_candidates(facts: Facts, registry: Registry, settings: Settings, lever: str,
                    cache: PackageCache) -> list[gen.Candidate]:
    """llama.cpp GGUF K-quants, written by the ``gguf`` exporter: the CPU's (and a split CPU/GPU's) serving
    format, since llama.cpp runs every layer it cannot place on the GPU from RAM. Sizes and quality costs are
    llama.cpp's published ones (``advise.serving``: file bits per weight, perplexity on Llama-3-8B)."""
    from tunekit.advise.serving import FILE_BPW, QUALITY_COST

    cls = registry.of("exporter").get("gguf")
    if cls is None:
        return []
    out = []
    for file_type in GGUF_SERVE_TYPES:
        spec = QuantSpec(f"gguf-{file_type}", FILE_BPW[file_type], ())
        cand = gen.Candidate(name=f"gguf-{file_type}", lever=lever, method="infer", stages={},
                             setup=evolve(infer_setup(facts, settings), quant=spec, engine="llama.cpp"),
                             quality_cost=QUALITY_COST[file_type], speedup=GGUF_SPEEDUP, export=file_type,
                             notes=[f"llama.cpp {file_type.upper()}: +{QUALITY_COST[file_type]:.1%} perplexity on "
                                    "Llama-3-8B (llama.cpp quantize README); runs on CPU, GPU or split between them"])
        out.append(require(cand, cls, facts, cache))
    return out


def context_candidates(facts: Facts, registry: Registry, settings: Settings,
                       cache: PackageCache) -> list[gen.Candidate]:
    """Each context extender at the factor the target needs, plus a 4-bit variant (the long context's KV
    cache often needs the weights' memory back); past ``UNTUNED_CONTEXT_FACTOR`` each comes with a warning
    and a LoRA fine-tune at the new length beside it."""
    arch, out = facts.model, []
    target = facts.target_context() or 2 * arch.max_context
    factor = gen.context_factor(arch, target)
    four_bit = [q for q in quantizer_options(registry, facts, settings, trainable_only=False, cache=cache)
                if q[0].bits_per_weight() <= 4.6]
    untuned = factor > UNTUNED_CONTEXT_FACTOR
    warning = (f"x{factor:g} is past the x{UNTUNED_CONTEXT_FACTOR:g} that holds without training: fine-tune "
               f"briefly at {target} tokens (YaRN/PI papers; the -ft recipe beside it)") if untuned else None
    lora = pick(registry, "adapter", "lora")
    for cls in registry.of("context").values():
        _, params = gen.instantiate(cls, {**settings.get("context", {}), "factor": factor})
        base = gen.Candidate(name=f"{cls.name}-x{factor:g}", lever="context", method="infer",
                             stages={"context": {"method": cls.name, **params}},
                             setup=infer_setup(facts, settings, seq=target),
                             quality_cost=float(cls.effects.quality_cost) * (2.0 if untuned else 1.0),
                             warnings=[warning] if warning else [], notes=list(cls.effects.notes))
        base = require(base, cls, facts, cache)
        out.append(base)
        if four_bit:  # the least lossy 4-bit base an engine serves well (vLLM/llama.cpp before transformers only)
            variants = [with_quant(base, *q, name=f"{cls.name}-x{factor:g}+{q[0].name}") for q in four_bit]
            out.append(min(variants, key=lambda c: (engines.servable(c, facts.engine) is not None,
                                                    engines.only_hf(c), c.quality_cost)))
        if untuned and lora is not None and cls.name == "yarn":
            ainst, aparams = gen.instantiate(lora, settings.get("adapter", {}))
            setup = evolve(train_setup(facts, settings), seq_len=target,
                            trainable_params=gen.adapter_trainable(ainst, arch))  # type: ignore[arg-type]
            tune = require(gen.Candidate(
                name=f"{cls.name}-x{factor:g}-ft", lever="context", method="lora",
                stages={"context": base.stages["context"], "adapter": {"method": lora.name, **aparams}},
                setup=setup, quality_cost=float(cls.effects.quality_cost), keep_if_unfit=True,
                notes=[f"the fine-tune that makes x{factor:g} hold: LoRA at {target} tokens "
                       "(YaRN: ~400 steps; LongLoRA trains Llama-2-7B to 100k on 8 GPUs)"]), lora, facts, cache)
            nf4 = [q for q in quantizer_options(registry, facts, settings, trainable_only=True, cache=cache)
                   if 3.5 <= q[0].bits_per_weight() <= 4.6]
            if nf4:  # a long sequence's activations need the weights' memory back: train on a 4-bit base,
                # one quantized on load (QLoRA's NF4) before one that needs a calibration pass first
                best = min(nf4, key=lambda q: (bool(q[0].requires.calibration), q[2]))
                tune = require(with_quant(tune, *best), type(best[0]), facts, cache)
            out.append(tune)
    return out


def family(facts: Facts, lever: str) -> str | None:
    """Which candidates a lever builds: "adapter" (fine-tunes, quantized bases under the quantize lever when
    the goal is fine-tuning), "full", "serve" (every other lever) or None (nothing)."""
    if lever == "none" or (lever == "prune" and facts.goal == "finetune"):
        return None
    if lever in ("adapter", "savings") or (lever == "quantize" and facts.goal == "finetune"):
        return "adapter"
    return "full" if lever == "full" else "serve"


def serves(facts: Facts, levers: list[str]) -> bool:
    """Whether ``generate`` may build a serving candidate for these levers."""
    return any(family(facts, lever) == "serve" for lever in levers)


def fastest_decode(registry: Registry) -> float:
    """The largest decode speed-up a serving candidate can declare: one quantizer, a pruner or the GGUF
    route each (``serve_candidates``); ``inf`` when a plugin's declarations leave no bound (a negative
    quality cost, effects that are not plain ``Effects``), so whoever bounds scores with it bounds nothing."""
    from tunekit.core.kinds import Effects

    fastest = GGUF_SPEEDUP
    for kind in ("quantizer", "pruner", "adapter", "context"):
        for cls in registry.of(kind).values():
            effects = getattr(cls, "effects", None)
            if not isinstance(effects, Effects) or effects.quality_cost < 0:
                return float("inf")
            if kind in ("quantizer", "pruner"):
                fastest = max(fastest, float(effects.speedup))
    return fastest


def generate(facts: Facts, registry: Registry, levers: list[str], settings: Settings,
             cache: PackageCache, *, estimated: bool = True) -> list[gen.Candidate]:
    """Candidates for every lever, in lever order, each with its memory estimate (``estimated=False``: none
    yet, for a caller that judges only a few of them and estimates those)."""
    out: list[gen.Candidate] = []
    for lever in levers:
        kind = family(facts, lever)
        if kind == "adapter":
            out += adapter_candidates(facts, registry, settings, lever, cache)
        elif kind == "full":
            out += full_candidates(facts, settings)
        elif kind == "serve":
            out += serve_candidates(facts, registry, settings, lever, cache)
    sampler = settings.get("sampler")
    sampler_cls = pick(registry, "sampler", "sampling")
    done = []
    for cand in out:
        if sampler and sampler_cls is not None and (cand.lever == "sampler" or facts.goal == "serve"):
            stage = {"method": sampler_cls.name, **(gen.plugin_params(sampler_cls, sampler) or {})}
            cand = evolve(cand, stages={**cand.stages, "sampler": stage})
        done.append(gen.estimate_candidate(facts.model, cand) if estimated else cand)
    return done
