"""Peak GPU memory of fine-tuning or serving a model, per GPU, from architecture facts alone.

Every formula lives here, with its source; ``bench/estimator.py`` compares the result with the 184
published measurements in ``bench/data/vram_calibration.json`` and ``docs/estimator.md`` records the error.
The few constants marked "fitted" below were fitted on that set (``python bench/estimator.py --fit``);
everything else is a byte count of what the libraries keep. Units: bytes inside, GB = 1e9 bytes in every
reported number (not GiB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from tunekit.advise.quant_memory import QUANTS, QuantSpec, quant_spec_of
from tunekit.advise.quant_memory import memory_bits as memory_bits  # re-exported: callers read every
from tunekit.advise.quant_memory import quant_spec as quant_spec  # memory fact from the estimator
from tunekit.core import kv_cache
from tunekit.core.arch import ALL_LINEAR, ModelArch
from tunekit.core.engines import ENGINES
from tunekit.core.errors import UsageError
from tunekit.core.records import evolve
from tunekit.core.sharding import SHARDED, STRATEGIES

GB = 1e9
METHODS = ("full", "lora", "qlora", "infer")
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw", "paged-adamw-8bit", "sgd")

# -- calibration constants (docs/estimator.md shows the error they leave) -----------------------
CUDA_CONTEXT_GB = 0.5  # CUDA context + cuBLAS workspace; nvidia-smi sees it, torch.cuda.max_memory_allocated does not
ALLOCATOR = 0.099  # fitted: caching-allocator reserve on top of live tensors (only whole-GPU figures see it)
LOGIT_BYTES_HF = 10.0  # bf16 logits (2) + fp32 upcast for the loss (4) + its fp32 grad (4); fitting gives ~6 (old
# Qwen-1 remote code stays in bf16) but current transformers keep at least these 10, so it is not fitted down
LOGIT_BYTES_CHUNKED = 2.0  # chunked/fused CE (torchtune, Liger, LitGPT): bf16 logits, fp32 one chunk at a time
NORM_UPCAST_BYTES = 8  # per hidden unit per layer: the fp32 copy each of the two RMSNorms keeps for backward
DEQUANT_LAYERS = 0.419  # fitted: 16-bit decoder layers a quantized model materializes at once (load, dequantize)
INFER_ACT_SCALE = 1.409  # fitted: multiplier on one layer's forward working set during a whole-prompt prefill
GATHER_LAYERS = 2.0  # ZeRO-3/FSDP: gathered 16-bit layers alive at once (the current one and its prefetch)
BAND_LOW = 0.926  # fitted with BAND_HIGH so that >= 80% of calibration points fall in [low, high]
BAND_HIGH = 1.116
FITS_QUANTILE = 0.75  # where in the band recommend's "fits" is decided (0 = low, 1 = high)


@dataclass(frozen=True)
class Setup:
    """Everything besides the architecture that decides the peak."""

    method: str = "lora"
    quant: QuantSpec = field(default_factory=lambda: QUANTS["bf16"])
    trainable_params: int | None = None  # adapter parameters; None -> LoRA r16 on all linears
    optimizer: str = "adamw"
    precision: str = "mixed"  # mixed (fp32 master, Transformer Math 101) | bf16 (pure) | fp32
    seq_len: int = 2048
    batch: int = 1
    grad_ckpt: bool = True
    attention: str = "sdpa"  # sdpa/flash drop the 5·a·s/h score term; eager keeps it
    kv_bits: float = 16.0
    gpus: int = 1
    strategy: str = "none"
    chunked_loss: bool = False  # chunked/fused cross-entropy (Liger, torchtune, Unsloth): no full fp32 logits
    activation_offload: bool = False  # checkpointed layer inputs kept in CPU RAM (Unsloth "offloaded" checkpointing)
    lora_dropout: bool = True  # PEFT keeps a dropped-out copy of each adapted module's input
    lora_targets: tuple[str, ...] = ALL_LINEAR
    optimizer_in_backward: bool = False
    engine: str = "vllm"  # inference: hf (generate prefills the whole prompt) | vllm | llama.cpp (chunked prefill)
    new_tokens: int = 0  # inference: generated tokens the KV cache holds beyond the prompt
    prefill_chunk: int = 8192  # vLLM chunked prefill / llama.cpp -ub; 0 = the whole prompt at once (engine hf)
    gather_full_weights: bool = False  # a sharded run saving a full state dict through the GPU (gathers everything)
    divisor: int = 0  # processes the sharded states split over (0: gpus); hybrid FSDP shards within a node
    sharded: frozenset[str] | None = None  # states split over processes (None: SHARDED[strategy])
    offloaded: frozenset[str] = frozenset()  # states moved to CPU RAM (ZeRO/FSDP offload)

    def check(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'")
        if self.strategy not in STRATEGIES:
            raise UsageError(f"strategy must be one of {', '.join(STRATEGIES)}, got '{self.strategy}'")
        if self.engine not in ENGINES:
            raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got '{self.engine}'")
        if self.new_tokens < 0 or self.prefill_chunk < 0:
            raise UsageError("new_tokens and prefill_chunk must be >= 0")
        if self.seq_len < 1 or self.batch < 1 or self.gpus < 1:
            raise UsageError("seq_len, batch and gpus must be >= 1")


DEFAULT_SETUP = Setup()


@dataclass(frozen=True)
class Estimate:
    """Peak memory per GPU, broken down (bytes), with a low/high band and the assumptions used.

    ``tensors`` is what ``torch.cuda.max_memory_allocated`` reports (no CUDA context, no allocator reserve);
    ``total`` is what ``nvidia-smi`` shows and what has to fit on the card.
    """

    breakdown: dict[str, float]
    low: float
    high: float
    arch: ModelArch
    setup: Setup  # as estimated (a QLoRA without a 4-bit spec gets NF4)
    side_bytes: dict[str, float]  # what the breakdown folds in or leaves out: CPU offload, dequant, gathers
    warnings: tuple[str, ...] = ()

    @cached_property
    def assumptions(self) -> dict[str, Any]:
        """What the estimate assumed, in the ``--json`` shape (built when asked: the recommender makes
        thousands of estimates and reads a handful of these)."""
        s, arch, side = self.setup, self.arch, self.side_bytes
        return {
            "model": arch.name, "params_b": round(arch.param_count() / 1e9, 3), "method": s.method,
            "weights": s.quant.name, "bits_per_weight": round(s.quant.bits, 3), "kept_16bit": list(s.quant.kept_16bit),
            "trainable_params": None if s.method in ("infer", "full") else int(
                s.trainable_params if s.trainable_params is not None else default_lora_params(arch)),
            "optimizer": s.optimizer, "precision": s.precision, "seq_len": s.seq_len, "batch": s.batch,
            "gradient_checkpointing": s.grad_ckpt, "attention": s.attention, "kv_bits": s.kv_bits,
            "gpus": max(s.gpus, 1), "strategy": s.strategy, "chunked_loss": s.chunked_loss,
            "activation_offload": s.activation_offload, "offloaded": sorted(s.offloaded),
            "cpu_offload_gb": round(side["cpu"] / GB, 2), "engine": s.engine,
            "prefill_chunk": 0 if s.engine == "hf" else s.prefill_chunk, "new_tokens": s.new_tokens,
            "dequant_gb": round(side["dequant"] / GB, 3), "gathered_gb": round(side["gathered"] / GB, 3),
        }

    @property
    def total(self) -> float:
        return sum(self.breakdown.values())

    @property
    def total_gb(self) -> float:
        return self.total / GB

    @property
    def tensors(self) -> float:
        return self.total - self.breakdown["cuda_context"] - self.breakdown["allocator"]

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` shape; GB = 1e9 bytes."""
        data = {
            "total_gb": round(self.total / GB, 2),
            "tensors_gb": round(self.tensors / GB, 2),
            "low_gb": round(self.low / GB, 2),
            "high_gb": round(self.high / GB, 2),
            "fits_gb": round(fits_bytes(self) / GB, 2),
            "breakdown": {k: round(v / GB, 3) for k, v in self.breakdown.items()},
            "assumptions": {**self.assumptions, "units": "GB = 1e9 bytes, per GPU"},
        }
        if self.warnings:
            data["warnings"] = list(self.warnings)
        return data


def fits_bytes(est: Estimate) -> float:
    """The memory a run is planned with: the upper part of the band (``FITS_QUANTILE`` of the way from low to
    high), so a fine-tune recommended as fitting does not run out of memory when the estimate errs low."""
    return est.low + FITS_QUANTILE * (est.high - est.low)


def fits(est: Estimate, budget_gb: float) -> bool:
    """Whether ``est`` fits ``budget_gb`` per GPU, decided on the upper part of the band (see ``fits_bytes``)."""
    return fits_bytes(est) <= budget_gb * GB


# -- the pieces ---------------------------------------------------------------------------


def default_lora_params(arch: ModelArch, r: int = 16, targets: tuple[str, ...] = ALL_LINEAR) -> int:
    """LoRA trainable params = r·Σ(d_in + d_out) over targeted modules x layers (docs/reference.md, Adapters)."""
    shapes = arch.linear_shapes()
    return arch.layers * sum(r * (shapes[m][0] + shapes[m][1]) * arch.module_copies(m) for m in targets)


def _embedding_counts(arch: ModelArch) -> tuple[int, int]:
    embed = arch.vocab * arch.hidden
    return embed, 0 if arch.tied_embeddings else embed


def weight_bytes(arch: ModelArch, quant: QuantSpec) -> float:
    """Params x bytes/param; quantized linears at the format's bits, kept ones at 16 (docs/reference.md, Memory)."""
    total = arch.param_count()
    if quant.whole_file:
        return total * quant.bits / 8
    embed, head = _embedding_counts(arch)
    keep_embed = "embed_tokens" in quant.kept_16bit or (arch.tied_embeddings and "lm_head" in quant.kept_16bit)
    kept = (embed if keep_embed else 0) + (head if "lm_head" in quant.kept_16bit else 0)
    norms = arch.layers * 2 * arch.hidden + arch.hidden
    quantized = total - kept - norms
    return quantized * quant.bits / 8 + (kept + norms) * 2


def training_state_bytes(params: float, optimizer: str, precision: str) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes per trained parameter (EleutherAI "Transformer Math 101").

    Mixed precision AdamW: 2 + 2 + 12 (fp32 master, m, v); 8-bit Adam keeps 4 (master) + 2 (m, v);
    SGD+momentum 4 + 4. Pure bf16 drops the master copy; fp32 stores 4-byte weights and grads.
    Paged AdamW (bitsandbytes, 8- or 32-bit) keeps m and v in unified memory that the driver pages to the CPU
    under pressure: counted as 0 on the GPU (the QLoRA paper's use: paging absorbs the spikes).
    """
    if precision == "fp32":
        w, g, opt = 4, 4, {"adamw": 8, "adamw-8bit": 2, "paged-adamw": 0, "paged-adamw-8bit": 0, "sgd": 4}[optimizer]
    elif precision == "bf16":
        w, g, opt = 2, 2, {"adamw": 4, "adamw-8bit": 2, "paged-adamw": 0, "paged-adamw-8bit": 0, "sgd": 2}[optimizer]
    else:
        w, g, opt = 2, 2, {"adamw": 12, "adamw-8bit": 6, "paged-adamw": 4, "paged-adamw-8bit": 4, "sgd": 8}[optimizer]
    return params * w, params * g, params * opt


def layer_activation_bytes_per_token(arch: ModelArch, seq_len: int, attention: str) -> float:
    """One decoder layer's saved activations per token (Korthikanti et al. 2022, Table 2, re-derived).

    GPT: s·b·h·(34 + 5·a·s/h). For Llama blocks (no dropout, GQA, SwiGLU with intermediate i) the same
    bookkeeping gives 2·(4h + 2q + 2kv + 4i) bytes: two RMSNorm inputs and the attention/MLP inputs
    (4h), Q and attention output (2q), K and V (2kv), gate, up, act(gate) and gate·up (4i).
    Eager attention adds the score matrices, 5·a·s bytes per token; SDPA/flash keep none.
    """
    q = arch.heads * arch.head_dim
    kv = arch.kv_heads * arch.head_dim
    mlp = (arch.moe_intermediate * arch.active_experts) if arch.experts else arch.intermediate
    per_token = 2 * (4 * arch.hidden + 2 * q + 2 * kv + 4 * mlp)
    if attention == "eager":
        per_token += 5 * arch.heads * seq_len
    return per_token


def norm_upcast_bytes_per_token(arch: ModelArch) -> float:
    """HF/LitGPT RMSNorm computes in fp32: each of a layer's two norms keeps a 4-byte copy of its input."""
    return NORM_UPCAST_BYTES * arch.hidden


def lora_dropout_bytes_per_token(arch: ModelArch, targets: tuple[str, ...]) -> float:
    """PEFT's LoRA applies its own dropout to each adapted module's input and keeps the bf16 result for backward
    (lora_A's gradient needs it): 2 bytes x d_in per targeted module."""
    shapes = arch.linear_shapes()
    return sum(2 * shapes[m][0] for m in targets if m in shapes)


def quantized_input_bytes_per_token(arch: ModelArch) -> float:
    """A 4-bit (bitsandbytes) linear's autograd function saves its input even though the weight is frozen, where
    a frozen 16-bit ``F.linear`` saves none: attention and MLP inputs (2h), o_proj's input (q), down_proj's (i)."""
    mlp = (arch.moe_intermediate * arch.active_experts) if arch.experts else arch.intermediate
    return 2 * (2 * arch.hidden + arch.heads * arch.head_dim + mlp)


def layer_bytes_16bit(arch: ModelArch) -> float:
    """One decoder layer's weights at 16 bits: what a gather (ZeRO-3/FSDP) or a dequantization materializes."""
    return arch.linear_params_per_layer() * 2.0


def logits_bytes(arch: ModelArch, tokens: int, chunked: bool) -> float:
    """The loss's logits: ``LOGIT_BYTES_HF`` per logit on transformers' loss path, bf16 only when chunked."""
    return tokens * arch.vocab * (LOGIT_BYTES_CHUNKED if chunked else LOGIT_BYTES_HF)


def training_activation_bytes(arch: ModelArch, s: Setup) -> float:
    """Activations for one micro-batch.

    One layer's working set: the Korthikanti terms, the fp32 norm copies, LoRA's dropout copies and, under a
    quantized base, the linear inputs its matmul keeps. Checkpointing stores 2·h bytes per token per layer (each
    layer's input) plus one layer's working set; activation offload moves those inputs to CPU RAM.
    """
    tokens = s.seq_len * s.batch
    per_token = layer_activation_bytes_per_token(arch, s.seq_len, s.attention) + norm_upcast_bytes_per_token(arch)
    if s.method in ("lora", "qlora") and s.lora_dropout:
        per_token += lora_dropout_bytes_per_token(arch, s.lora_targets)
    if s.method != "full" and s.quant.bits < 16:
        per_token += quantized_input_bytes_per_token(arch)
    layer = per_token * tokens
    if s.activation_offload:  # saved tensors go to CPU as they are made (with checkpointing: the layer inputs)
        stored = layer + 2 * arch.hidden * tokens  # the layer being recomputed and one input in flight
    elif not s.grad_ckpt:
        stored = arch.layers * layer
    else:
        stored = arch.layers * 2 * arch.hidden * tokens + layer
    return stored + logits_bytes(arch, tokens, s.chunked_loss)


def kv_cache_bytes(arch: ModelArch, seq_len: int, batch: int, kv_bits: float = 16.0) -> float:
    """2 x layers x kv_heads x head_dim x seq x batch x bytes/elem (docs/reference.md, KV cache)."""
    return 2 * arch.layers * arch.kv_heads * arch.head_dim * seq_len * batch * kv_bits / 8


def inference_activation_bytes(arch: ModelArch, s: Setup) -> float:
    """Prefill working set of one layer (bf16, nothing saved for backward) plus last-token fp32 logits.

    vLLM (chunked prefill) and llama.cpp (micro-batches) run a long prompt through in ``prefill_chunk`` tokens;
    HF ``generate`` prefills the whole prompt at once, so its working set grows with the prompt.
    """
    q = arch.heads * arch.head_dim
    mlp = (arch.moe_intermediate * arch.active_experts) if arch.experts else arch.intermediate
    tokens = s.seq_len * s.batch
    chunk = 0 if s.engine == "hf" else s.prefill_chunk
    if chunk:
        tokens = min(tokens, chunk)
    per_token = 2 * (2 * arch.hidden + q + 2 * mlp) * INFER_ACT_SCALE
    scores = 2 * arch.heads * s.seq_len * tokens if s.attention == "eager" else 0
    return tokens * per_token + scores + s.batch * arch.vocab * 4


# -- the estimate -------------------------------------------------------------------------


def band(nbytes: float) -> tuple[float, float]:
    """The low/high band around a point estimate, calibrated to hold >= 80% of the calibration points."""
    return BAND_LOW * nbytes, BAND_HIGH * nbytes


def estimate(arch: ModelArch, setup: Setup | None = None, **changes: Any) -> Estimate:
    """Peak memory per GPU for ``setup`` (keyword changes override its fields)."""
    s = evolve(setup or DEFAULT_SETUP, **changes) if changes else setup or DEFAULT_SETUP
    s.check()
    warnings: list[str] = list(getattr(arch, "guessed", ()))
    if s.method != "infer" and s.gpus > 1 and s.strategy == "none":
        warnings.append(f"{s.gpus} GPUs without a sharding strategy: every GPU holds the whole model "
                        "(replicated, as DDP); FSDP or ZeRO-3 would split it")
    n = max(s.gpus, 1)
    params = arch.param_count()
    if s.method == "qlora" and s.quant.bits >= 16:
        s = evolve(s, quant=QUANTS["nf4"])
    kv = 0.0
    if s.method == "infer":
        weights = weight_bytes(arch, s.quant) / n  # tensor parallel over n GPUs (vLLM -tp n)
        grads = opt = 0.0
        act = inference_activation_bytes(arch, s)
        kv = kv_cache_bytes(arch, s.seq_len + s.new_tokens, s.batch, s.kv_bits) / n
    elif s.method == "full":
        weights, grads, opt = training_state_bytes(params, s.optimizer, s.precision)
        if s.optimizer_in_backward:  # torchtune: step each parameter in backward; one grad alive at a time
            grads = max(arch.vocab * arch.hidden, max(a * b for a, b in arch.linear_shapes().values())) * 2
        act = training_activation_bytes(arch, s)
    else:
        base = weight_bytes(arch, s.quant if s.method == "qlora" else QUANTS["bf16"])
        trainable = s.trainable_params if s.trainable_params is not None else default_lora_params(arch)
        # adapter weights kept in fp32 by PEFT, fp32 grads, AdamW m and v: 4 + 4 + 8 bytes
        opt_bytes = {"adamw": 8.0, "sgd": 4.0}.get(s.optimizer, 2.0) if "paged" not in s.optimizer else 0.0
        weights, grads, opt = base + trainable * 4.0, trainable * 4.0, trainable * opt_bytes
        act = training_activation_bytes(arch, s)
    cpu = gathered = 0.0
    if s.method != "infer":
        # the same table the launch config uses (tunekit.core.sharding.SHARDED): ZeRO-2 splits gradients and
        # optimizer state, ZeRO-3/FSDP full_shard also the weights (docs/reference.md, Memory: ZeRO divides by N)
        sharded = s.sharded if s.sharded is not None else SHARDED[s.strategy]
        div = s.divisor or n
        full_weights = weights
        states = {"weights": weights, "gradients": grads, "optimizer": opt}
        for state in states:
            if state in sharded:
                states[state] /= div
            if state in s.offloaded:
                cpu += states[state]
                states[state] = 0.0
        weights, grads, opt = states["weights"], states["gradients"], states["optimizer"]
        if "weights" in sharded and div > 1:
            # ZeRO-3/FSDP all-gather a layer before using it and prefetch the next one
            gathered = min(GATHER_LAYERS * layer_bytes_16bit(arch), full_weights)
            if s.gather_full_weights:  # a full state dict assembled on the GPU when saving
                gathered = max(gathered, full_weights)
        if s.offloaded:  # gradients stream to the CPU optimizer through a bucket of about one layer
            gathered += layer_bytes_16bit(arch)
    dequant = 0.0
    if s.quant.bits < 16 and not s.quant.whole_file:
        # bitsandbytes/GPTQ kernels dequantize a layer's weights to 16 bits (and loading materializes it)
        dequant = DEQUANT_LAYERS * layer_bytes_16bit(arch) / (n if s.method == "infer" else 1)
    act += dequant + gathered
    tensors = weights + grads + opt + act + kv
    breakdown = {"weights": weights, "gradients": grads, "optimizer": opt, "activations": act, "kv_cache": kv,
                 "cuda_context": CUDA_CONTEXT_GB * GB, "allocator": ALLOCATOR * tensors}
    total = sum(breakdown.values())
    low, high = band(total)
    return Estimate(breakdown=breakdown, low=low, high=high, arch=arch, setup=s,
                    side_bytes={"cpu": cpu, "dequant": dequant, "gathered": gathered}, warnings=tuple(warnings))


def setup_from_recipe(resolved: Any, arch: ModelArch, **overrides: Any) -> Setup:
    """The ``Setup`` a resolved recipe implies: its quantizer's declared bits, its adapter's trainable
    parameters, its train and distributed sections (sharding as ``tunekit.core.sharding`` computes it)."""
    from tunekit.core.sharding import offloaded_states, shard_divisor, sharded_states

    recipe, stages = resolved.recipe, resolved.stages
    quantizer, adapter, context = stages.get("quantizer"), stages.get("adapter"), stages.get("context")
    quant = quant_spec_of(quantizer) if quantizer is not None else QUANTS["bf16"]
    train = recipe.train
    if train is not None:
        # no adapter: a full fine-tune (every weight trains; a train.trainable subset is estimated as all of
        # them, the safe side, since which parameters match is only known once the model is built)
        method = "full" if adapter is None else "qlora" if quantizer is not None else "lora"
        trainable = int(adapter.trainable_params(arch)) if adapter is not None else None
        section = recipe.distributed
        setup = Setup(method=method, quant=quant, trainable_params=trainable,
                      optimizer=train.optimizer, precision="fp32" if train.precision == "fp32" else "mixed",
                      seq_len=train.seq_len, batch=train.batch_size, grad_ckpt=train.gradient_checkpointing,
                      chunked_loss=train.chunked_loss, activation_offload=train.activation_offload,
                      gpus=section.gpus * section.nodes if section.strategy != "none" else 1,
                      strategy=section.strategy, sharded=sharded_states(section),
                      divisor=max(shard_divisor(section, s) for s in ("weights", "gradients", "optimizer")),
                      offloaded=offloaded_states(section))
    else:
        seq = int(context.target_context(arch)) if context is not None else min(4096, arch.max_context)
        engine = recipe.serve.engine or Setup.engine
        sampler = stages.get("sampler")  # its generation config names the KV cache generate builds
        kv = kv_cache.kv_bits(sampler.generation_config()) if sampler is not None else 16.0
        setup = Setup(method="infer", quant=quant, seq_len=seq, engine=engine, kv_bits=kv)
    return evolve(setup, **{k: v for k, v in overrides.items() if v is not None})
