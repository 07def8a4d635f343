"""Making a candidate fit before judging it: shard it over the GPUs, page its optimizer, shorten its sequence.

The order is the one a practitioner follows when a training run runs out of memory (HF's "methods and
tools for efficient training on a single GPU"): gradient checkpointing (always on in recommended
recipes), an 8-bit optimizer, a shorter sequence; changing the method (another adapter, a lower-bit
base) comes after, as a candidate of its own. Each function returns a new candidate and why it changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunekit.advise.estimate import (
    FITS_QUANTILE,
    GB,
    Estimate,
    QuantSpec,
    Setup,
    band,
    estimate,
    fits_bytes,
    weight_bytes,
)
from tunekit.advise.hardware import smallest_gpu_fitting
from tunekit.advise.limits import max_seq_len
from tunekit.advise.rules import candidates as gen
from tunekit.advise.rules.speed import CPU_BANDWIDTH_GBS, decode_tokens_per_s, gpu_bandwidth_gbs
from tunekit.core.records import evolve

if TYPE_CHECKING:
    from tunekit.advise.rules.engine import Facts
    from tunekit.core.registry import Registry

Fitted = tuple[gen.Candidate, list[str]]


def planned_gb(cand: gen.Candidate) -> float:
    """The memory a candidate is planned with: the upper part of the estimator's band
    (``estimate.fits_bytes``), so a recommended fine-tune does not run out of memory when the point
    estimate errs low (it does on about half of the published runs)."""
    assert cand.memory is not None
    return fits_bytes(cand.memory) / GB


def fits(facts: Facts, cand: gen.Candidate) -> bool:
    """Fits on the upper part of the band, with the user's margin kept free."""
    return planned_gb(cand) * (1 + facts.margin) <= facts.budget_gb()


def tight(facts: Facts, cand: gen.Candidate) -> bool:
    """Fits only inside the margin: the point estimate is below the memory but the margin is not kept.
    Published runs sit there (an 8B QLoRA in 6-8 GB), so it is offered, with what to do to make room."""
    assert cand.memory is not None
    return not fits(facts, cand) and planned_gb(cand) <= facts.budget_gb()


TIGHT_ADVICE = ("tight: inside the {margin:.0%} margin; close other GPU programs and set "
                "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True")


def shard(facts: Facts, cand: gen.Candidate, registry: Registry) -> Fitted:
    """With several GPUs, a training candidate that does not fit on one is sharded (FSDP full_shard).

    A 4-bit base sharded by FSDP needs its packed weights stored in the compute dtype (bnb
    ``quant_storage``, the route transformers and PEFT document): set when the quantizer has the field."""
    gpus = facts.hardware.gpus
    if gpus < 2 or cand.method == "infer" or fits(facts, cand):
        return cand, []
    stages = dict(cand.stages)
    quant = stages.get("quantizer")
    if quant is not None:
        cls = registry.of("quantizer").get(quant["method"])
        extra = gen.plugin_params(cls, {"quant_storage": "bfloat16"}) if cls is not None else None
        stages["quantizer"] = {**quant, **(extra or {})}
    sharded = gen.estimate_candidate(facts.model, evolve(cand, stages=stages,
                                                          setup=evolve(cand.setup, strategy="fsdp", gpus=gpus)))
    # no figure here: later steps (8-bit AdamW, a shorter sequence) change it; the `needs ~` reason has the last
    return sharded, [f"sharded with FSDP over {gpus} GPUs (weights, gradients and optimizer state / {gpus})"]


def page_optimizer(facts: Facts, cand: gen.Candidate) -> Fitted:
    """Swap AdamW for bitsandbytes' 8-bit AdamW when the candidate does not fit (state 8 -> 2 bytes/param);
    when that is not enough either, page it (the QLoRA paper's paged optimizer: bitsandbytes moves the state
    to CPU RAM under memory pressure, which also absorbs the step's spikes)."""
    if cand.method == "infer" or cand.setup.optimizer != "adamw" or fits(facts, cand):
        return cand, []
    lean = gen.estimate_candidate(facts.model, evolve(cand, setup=evolve(cand.setup, optimizer="adamw-8bit")))
    if fits(facts, lean) or cand.method == "lora":  # a LoRA's state on a 16-bit base is too small to page
        return lean, ["8-bit AdamW (bitsandbytes) to fit: optimizer state 2 bytes/param instead of 8"]
    paged = gen.estimate_candidate(facts.model, evolve(cand, setup=evolve(cand.setup, optimizer="paged-adamw-8bit")))
    return paged, ["paged 8-bit AdamW (bitsandbytes) to fit: optimizer state in pageable CPU memory"]


ZERO_OFFLOAD: dict[str, Any] = {"optimizer": "adamw", "strategy": "zero3", "offloaded": frozenset({"optimizer"})}
"""The ``Setup`` changes of ZeRO-Offload: ZeRO-3 with the optimizer state and step in CPU RAM, which DeepSpeed
takes with its own CPU AdamW (``offload_optimizer`` here and the full-fine-tune facts of ``Facts.to_dict``)."""


def offload_optimizer(facts: Facts, cand: gen.Candidate) -> Fitted:
    """A full fine-tune that fits neither sharded nor with a paged 8-bit optimizer: DeepSpeed ZeRO-3 with the
    optimizer state and step in CPU RAM (ZeRO-Offload, the ZeRO-Offload paper's 13B on one V100), if the RAM
    holds every process's share (80% of it). DeepSpeed steps with its own CPU AdamW, so the optimizer is AdamW."""
    if cand.method != "full" or fits(facts, cand) or not facts.hardware.gpus:
        return cand, []
    gpus = max(facts.hardware.gpus, 1)
    moved = gen.estimate_candidate(facts.model, evolve(cand, setup=evolve(cand.setup, gpus=gpus, **ZERO_OFFLOAD)))
    assert moved.memory is not None
    if not fits(facts, moved) or not ram_holds(facts, moved.memory):
        return cand, []
    ram = moved.memory.side_bytes["cpu"] * gpus
    return moved, [f"ZeRO-3 over {gpus} GPU{'s' if gpus > 1 else ''} with the optimizer state and step in CPU RAM "
                   f"(~{ram / GB:.0f} GB of RAM; DeepSpeed's CPU AdamW): fits, each step waits on the CPU"]


def ram_holds(facts: Facts, est: Estimate) -> bool:
    """Whether CPU RAM holds what every process of ``est`` offloads to it (80% of the RAM, as a split uses)."""
    return est.side_bytes["cpu"] * max(est.setup.gpus, 1) <= 0.8 * facts.hardware.ram_gb * GB


def accumulate(facts: Facts, cand: gen.Candidate) -> Fitted:
    """The ``savings`` lever trades the micro-batch for gradient accumulation before it shortens the sequence:
    the same effective batch, activations of one sequence (HF's single-GPU training guide, first step)."""
    if cand.lever != "savings" or cand.setup.batch == 1 or fits(facts, cand):
        return cand, []
    steps = cand.setup.batch
    one = gen.estimate_candidate(facts.model, evolve(cand, setup=evolve(cand.setup, batch=1)))
    return one, [f"micro-batch 1 with gradient accumulation x{steps} (same effective batch; was {steps})"]


def shorten(facts: Facts, cand: gen.Candidate) -> Fitted:
    """Shorten the sequence until the candidate fits, decided as ``fits`` decides (the upper part of the band,
    the margin kept free), down to 256 tokens in training (a short instruction example) and 2048 serving; the
    user's --seq-len is kept unless the ``savings`` lever is asked to find what fits. When nothing fits with
    the margin, the longest that fits inside it (``tight``); when even the floor does not, leave it there so
    the near miss shows its leanest configuration. A serving candidate keeps the ``--context`` asked."""
    assert cand.memory is not None
    budget = facts.budget_gb() / (1 + facts.margin)
    # the user's length: --seq-len, or for serving --context (the context the model must read)
    asked = facts.seq_len is not None or (cand.method == "infer" and facts.context_target is not None)
    pinned = asked and cand.lever != "savings"
    if pinned or fits(facts, cand) or facts.goal == "long-context" or cand.lever == "context":
        return cand, []
    if cand.export and cand.memory.breakdown["weights"] / GB >= budget:  # no context makes it fit: split it
        return cand, []
    floor = min(256 if cand.method != "infer" else 2048, cand.setup.seq_len)
    # on the 256-token grid the result is rounded to (a floor below 256 is the asked length, which does not fit)
    best = max_seq_len(facts.model, cand.setup, budget, limit=cand.setup.seq_len, planned=True, step=256)
    if best < floor:  # not with the margin: what fits inside it
        best = max_seq_len(facts.model, cand.setup, facts.budget_gb(), limit=cand.setup.seq_len, planned=True,
                           step=256)
    chosen = max(floor, best)
    short = gen.estimate_candidate(facts.model, evolve(cand, setup=evolve(cand.setup, seq_len=chosen)))
    assert short.memory is not None
    if best < floor:
        return short, [f"does not fit even at {chosen} tokens (~{short.memory.total_gb:.1f} GB)"]
    how = "pass --seq-len to choose" if facts.seq_len is None else f"was {facts.seq_len}"
    return short, [f"fits at seq_len {chosen} tokens ({how})"]


ROOMLESS = "fits only inside the memory margin"
"""The drop reason of a candidate the model ranking will not offer for being tight."""


def split(facts: Facts, cand: gen.Candidate) -> Fitted:
    """A GGUF that does not fit the GPU runs split: ``-ngl`` layers on the GPU, the rest from RAM."""
    ram = 0.8 * facts.hardware.ram_gb * GB
    if not cand.export or not facts.hardware.gpus or fits(facts, cand) or not ram:
        return cand, []
    from tunekit.advise.serving import GPU_RESERVE_BYTES, gpu_layers, kv_type

    assert cand.memory is not None
    size = int(weight_bytes(facts.model, cand.setup.quant))
    vram = int(facts.budget_gb() / (1 + facts.margin) * GB)
    off = gpu_layers(facts.model, size, vram, cand.setup.seq_len, kv_type(cand.setup.kv_bits))
    if off.cpu_bytes > ram:
        return cand, []
    speed = decode_tokens_per_s(facts, off.gpu_bytes, off.cpu_bytes)
    # what stays on the GPU: the offloaded layers with their KV cache, and llama.cpp's compute buffers and
    # CUDA context (GPU_RESERVE_BYTES); ggml allocates those itself: no PyTorch activations or caching allocator
    kv = min(off.ngl, off.layers) * off.kv_bytes / off.layers
    on_gpu = {**{k: 0.0 for k in cand.memory.breakdown}, "weights": off.gpu_bytes - kv, "kv_cache": kv,
              "overhead": float(GPU_RESERVE_BYTES)}
    total = sum(on_gpu.values())
    memory = evolve(cand.memory, breakdown=on_gpu, low=0.9 * total, high=1.1 * total)
    if off.all_on_gpu:  # counted as llama.cpp allocates, every layer fits: no split, the GPU's own speed
        return evolve(cand, memory=memory), [
            f"llama.cpp places every layer on the GPU (weights, KV cache and compute buffers ~{total / GB:.1f} GB)"]
    return evolve(cand, split_layers=off.ngl, tokens_per_s=speed, memory=memory), [
        f"llama.cpp split: -ngl {off.ngl} of {off.layers} layers on the GPU, {off.cpu_bytes / GB:.0f} GB in RAM; "
        f"~{speed:.1f} tokens/s (bandwidth-bound, {CPU_BANDWIDTH_GBS:g} GB/s RAM assumed)"]


PCIE_BANDWIDTH_GBS = 25.0
"""Host-to-GPU copies over PCIe 4.0 x16 (32 GB/s peak, ~25 sustained): accelerate moves each CPU-offloaded
layer's weights to the GPU at every forward, so that link, not the RAM, bounds their share of a token."""

DISK_BANDWIDTH_GBS = 3.0
"""Sequential reads from an NVMe SSD (PCIe 3/4 drives: 3-7 GB/s); disk-offloaded layers are read per token."""

OFFLOAD_POINTS = 5.0
"""An offloaded model decodes several times slower than one whose weights sit on the GPU (every token pulls
the offloaded layers over PCIe): more than the as-is lever's lead over a 4-bit quantizer (~4 points), so a
quantized model that fits ranks above it; the offload is offered, not preferred."""

TENSOR_KEYS = ("weights", "gradients", "optimizer", "activations", "kv_cache")
"""The estimate's tensor parts (the allocator's share is a fraction of their sum)."""


def quantize_kv(facts: Facts, cand: gen.Candidate) -> Fitted:
    """A serving candidate that does not fit keeps an 8-bit KV cache before its context is shortened: llama.cpp
    ``-ctk q8_0 -ctv q8_0`` for a GGUF, vLLM ``--kv-cache-dtype fp8`` on a GPU with FP8 (Ada, Hopper): half the
    cache for ~no quality (llama.cpp's KV-quantization results; vLLM's FP8 KV cache docs). Transformers'
    quantized caches are slower than the 16-bit one, so a transformers-only recipe keeps its cache."""
    from tunekit.advise.rules import engines

    if cand.method != "infer" or cand.setup.kv_bits <= 8 or fits(facts, cand) or not facts.hardware.gpus:
        return cand, []
    vllm = facts.hardware.fp8 and cand.setup.engine == "vllm" and engines.problem("vllm", cand) is None
    if not cand.export and not vllm:
        return cand, []
    half = gen.estimate_candidate(facts.model, evolve(cand, setup=evolve(cand.setup, kv_bits=8.0)))
    flag = "-ctk q8_0 -ctv q8_0" if cand.export else "--kv-cache-dtype fp8"
    return half, [f"8-bit KV cache ({flag}) to fit: half the cache, ~no quality cost"]


def offload(facts: Facts, cand: gen.Candidate) -> Fitted:
    """16-bit weights served by transformers (``--engine hf``) that do not fit the GPU: ``model.offload``
    places layers over GPU, CPU RAM and disk (accelerate's big-model inference), as the llama.cpp split
    does for a GGUF; the expected tokens/s is bandwidth-bound (GPU memory, PCIe, disk)."""
    ram = 0.8 * facts.hardware.ram_gb * GB
    if (facts.engine != "hf" or cand.method != "infer" or cand.export or cand.stages.get("quantizer")
            or not facts.hardware.gpus or fits(facts, cand)):
        return cand, []
    assert cand.memory is not None
    parts = cand.memory.breakdown
    weights = parts["weights"]
    others = sum(parts[k] for k in TENSOR_KEYS if k != "weights")
    rate = parts["allocator"] / max(sum(parts[k] for k in TENSOR_KEYS), 1.0)
    low, high = band(1.0)
    planned = low + FITS_QUANTILE * (high - low)  # fits() plans with this share of the point estimate
    target = 0.99 * facts.budget_gb() * GB / (1 + facts.margin) / planned  # 1% below, so float rounding fits
    fixed = sum(v for k, v in parts.items() if k not in (*TENSOR_KEYS, "allocator"))
    gpu = min(weights, (target - fixed) / (1 + rate) - others)
    if gpu <= 0:
        return cand, []  # not even the KV cache and activations fit beside the first layer
    cpu = min(weights - gpu, ram)
    disk = weights - gpu - cpu
    seconds = (gpu / (gpu_bandwidth_gbs(facts) * GB) + cpu / (PCIE_BANDWIDTH_GBS * GB)
               + disk / (DISK_BANDWIDTH_GBS * GB))
    speed = 1 / seconds
    on_gpu = {**parts, "weights": gpu, "allocator": rate * (gpu + others)}
    total = sum(on_gpu.values())
    memory = evolve(cand.memory, breakdown=on_gpu, low=band(total)[0], high=band(total)[1])
    section = {"gpu_gb": round(gpu / GB - 0.05, 1), "cpu_gb": round(cpu / GB + 0.05, 1) if cpu else None}
    where = f"{cpu / GB:.0f} GB in RAM" + (f", {disk / GB:.0f} GB on disk" if disk > 0 else "")
    return evolve(cand, offload={k: v for k, v in section.items() if v}, tokens_per_s=speed, memory=memory), [
        f"transformers offload (model.offload): {gpu / GB:.0f} GB of weights on the GPU, {where}; "
        f"~{speed:.1f} tokens/s (bandwidth-bound: offloaded layers cross PCIe at {PCIE_BANDWIDTH_GBS:g} GB/s "
        f"each token" + (f", disk at {DISK_BANDWIDTH_GBS:g} GB/s" if disk > 0 else "") + ")"]


def fit(facts: Facts, cand: gen.Candidate, registry: Registry) -> Fitted:
    """Shard, page the optimizer (or move it to CPU RAM), trade the micro-batch for accumulation, halve the KV
    cache, offload, shorten, split; the reasons of each step that changed something."""
    reasons: list[str] = []
    for step in (lambda c: shard(facts, c, registry), lambda c: page_optimizer(facts, c)):
        cand, why = step(cand)
        reasons += why
    cand, why = offload_optimizer(facts, cand)
    if why:  # ZeRO-3 with the optimizer in RAM replaces the FSDP shard and the 8-bit optimizer tried first
        reasons = why
    for step in (lambda c: accumulate(facts, c), lambda c: quantize_kv(facts, c), lambda c: offload(facts, c),
                 lambda c: shorten(facts, c), lambda c: split(facts, c)):
        cand, why = step(cand)
        reasons += why
    return cand, reasons


def _leanest(facts: Facts, cand: gen.Candidate, seq_len: int) -> list[Any]:
    """The setups a training candidate's fitting steps could lead to that use the least memory at up to
    ``seq_len`` tokens: paged 8-bit AdamW for AdamW, the ``savings`` lever's micro-batch 1, and sharded
    over the GPUs when there are several. Each step only lowers the estimate."""
    setup = cand.setup
    lean = evolve(setup, optimizer="paged-adamw-8bit" if setup.optimizer == "adamw" else setup.optimizer,
                  batch=1 if cand.lever == "savings" else setup.batch, seq_len=min(setup.seq_len, seq_len))
    shapes = [lean]
    if facts.hardware.gpus >= 2 and setup.strategy == "none":
        shapes.append(evolve(lean, strategy="fsdp", gpus=facts.hardware.gpus))
    return shapes


def leanest(facts: Facts, cand: gen.Candidate, seq_len: int) -> list[Estimate]:
    """Estimates of a training candidate at its leanest (``_leanest``) at up to ``seq_len`` tokens: floors
    under what ``fit`` can leave it with at that length; none for a serving candidate (offload and split
    move weights off the GPU)."""
    if cand.method == "infer":
        return []
    return [estimate(facts.model, s) for s in _leanest(facts, cand, seq_len)]


def could_fit_at(facts: Facts, cand: gen.Candidate, seq_len: int, lean: list[Estimate] | None = None) -> bool:
    """Whether ``fit`` could make a training candidate fit (the margin kept free) at ``seq_len`` tokens or
    more (``lean``: its ``leanest`` at that length, when already made); a False is final, a serving
    candidate is always True."""
    if cand.method == "infer":
        return True
    return any(fits_bytes(e) / GB * (1 + facts.margin) <= facts.budget_gb()
               for e in (lean if lean is not None else leanest(facts, cand, seq_len)))


def fine_tune_floor_fits(facts: Facts, base: QuantSpec, seq_len: int) -> bool:
    """Whether the floor under every fine-tune candidate on ``base`` fits (the margin kept free) at
    ``seq_len`` tokens: a LoRA with no trainable parameters and no dropout copies, micro-batch 1, paged 8-bit
    AdamW, sharded over the GPUs when there are several (a full fine-tune needs more than that LoRA on its
    16-bit weights). False for every base a candidate may use: no candidate needs building."""
    gpus = max(facts.hardware.gpus, 1)
    floor = Setup(method="qlora" if base.bits < 16 else "lora", quant=base, trainable_params=0, lora_dropout=False,
                  optimizer="paged-adamw-8bit", batch=1, seq_len=seq_len, gpus=gpus)
    setups = [floor, evolve(floor, strategy="fsdp")] if gpus >= 2 else [floor]
    return any(fits_bytes(estimate(facts.model, s)) / GB * (1 + facts.margin) <= facts.budget_gb() for s in setups)


def least_gb(facts: Facts, cand: gen.Candidate, seq_len: int = 256) -> float:
    """A floor under the memory ``fit`` can leave a candidate with at ``seq_len`` tokens or more (256: the
    shortest ``shorten`` goes to); 0 for serving (a split or an offload can leave little)."""
    lean = leanest(facts, cand, seq_len)
    return min(e.total_gb for e in lean) if lean else 0.0


def no_fit(facts: Facts, cands: list[gen.Candidate], recipe: str | None = None) -> dict[str, Any]:
    """The smallest single GPU that would fit the leanest candidate, and the multi-GPU/offload options;
    ``recipe`` is the file the commands name (what ``--write`` writes for that candidate)."""
    lean = min(cands, key=lambda c: c.memory.total_gb if c.memory else float("inf"))
    assert lean.memory is not None
    # the same figure the table shows, and the same decision ``fits`` makes (upper band + margin)
    gpu = smallest_gpu_fitting(planned_gb(lean) * (1 + facts.margin))
    out: dict[str, Any] = {"leanest": lean.name, "needs_gb": round(lean.memory.total_gb, 1),
                           "planned_gb": round(planned_gb(lean), 1),
                           "smallest_gpu": gpu.name if gpu else None,
                           "smallest_gpu_vram_gb": gpu.vram_gb if gpu else None}
    per_gpu = facts.hardware.vram_gb or (gpu.vram_gb if gpu else 80.0)
    recipe = recipe or f"{facts.model.name}-{lean.name}.yaml"
    out["recipe"] = recipe
    for n in (2, 4, 8, 16, 32, 64):
        if lean.method == "infer":
            est = estimate(facts.model, lean.setup, gpus=n)
        else:
            est = estimate(facts.model, lean.setup, gpus=n, strategy="fsdp")
        if fits_bytes(est) / GB * (1 + facts.margin) <= per_gpu:
            out["multi_gpu"] = {"gpus": n, "per_gpu_gb": round(est.total_gb, 1), "strategy": "fsdp"
                                if lean.method != "infer" else "tensor-parallel"}
            if lean.method == "infer":
                hub = facts.model.aliases[0] if facts.model.aliases else facts.model.name
                out["commands"] = [f"vllm serve {hub} --tensor-parallel-size {n}"]
            else:
                out["commands"] = [
                    f"tunekit launch {recipe} --gpus {n} --strategy fsdp -- --output out/{facts.model.name}",
                    f"accelerate launch --num_processes {n} --use_fsdp --fsdp_sharding_strategy FULL_SHARD "
                    f"-m tunekit apply {recipe} --output out/{facts.model.name} --set distributed.strategy=fsdp "
                    f"--set distributed.gpus={n}",
                    f"accelerate launch --num_processes {n} --use_deepspeed --zero_stage 3 -m tunekit apply {recipe} "
                    f"--output out/{facts.model.name} --set distributed.strategy=zero3 --set distributed.gpus={n}",
                ]
            break
    if lean.method != "infer":
        off = estimate(facts.model, lean.setup, strategy="zero3", offloaded=frozenset({"optimizer", "weights"}))
        out["cpu_offload"] = {"per_gpu_gb": round(off.total_gb, 1),
                              "cpu_ram_gb": off.assumptions["cpu_offload_gb"],
                              "how": "DeepSpeed ZeRO-3 with offload_param/offload_optimizer: cpu "
                                     "(distributed.offload_params/offload_optimizer), slow but fits"}
    return out
