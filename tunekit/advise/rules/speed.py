"""How fast a candidate decodes or trains: bandwidth-bound decode (bytes read per token over the memory they
are read from) and a CPU-only fine-tune's compute time; the ``--latency-ms`` check built on them.

Memory is ``fitting``'s job; this module only times what fitting placed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunekit.advise.estimate import GB
from tunekit.advise.hardware import slowest_card_of_size
from tunekit.advise.rules import candidates as gen

if TYPE_CHECKING:
    from tunekit.advise.rules.engine import Facts
    from tunekit.core.arch import ModelArch


#: Sustained memory bandwidth of a desktop/server CPU socket assumed for llama.cpp decode from RAM
#: (dual-channel DDR5-6000 is ~96 GB/s peak, ~60 sustained); the GPU's comes from the GPU table.
CPU_BANDWIDTH_GBS = 60.0


CPU_TRAIN_TFLOPS = 0.5
"""Matmul throughput PyTorch sustains in training on a desktop CPU socket (a 16-core AVX-512 part peaks at a
few TFLOPS in bf16; ~0.5 sustained, less without AVX-512): what a CPU-only fine-tune runs at. GPUs are not
timed: on a GPU, memory bounds a fine-tune long before time does."""

CPU_TRAIN_HOURS_LIMIT = 24.0
"""The model ranking offers a CPU-only fine-tune only if a million training tokens (~1,000 samples of 1k
tokens, a small instruction set's epoch) take at most a day at ``CPU_TRAIN_TFLOPS``."""


def train_flops_per_token(arch: ModelArch, method: str) -> float:
    """FLOPs per trained token (docs/reference.md, Training compute): forward 2N, backward 4N (half of it the
    weight gradients) and a recomputed forward 2N with checkpointing: 8N for a full fine-tune, 6N for an
    adapter (frozen weights get no weight gradients). N counts the active parameters of a mixture of experts."""
    return (8.0 if method == "full" else 6.0) * arch.param_count(active_only=True)


def cpu_train_hours(arch: ModelArch, method: str = "lora", tokens: float = 1e6) -> float:
    """Hours a CPU-only fine-tune of ``tokens`` training tokens takes at ``CPU_TRAIN_TFLOPS``."""
    return tokens * train_flops_per_token(arch, method) / (CPU_TRAIN_TFLOPS * 1e12) / 3600


def gpu_bandwidth_gbs(facts: Facts) -> float:
    """The GPU's bandwidth (``resolve_hardware`` fills it, for a bare --vram from the slowest listed card of
    that memory size); for hardware made without one, that card's."""
    if facts.hardware.bandwidth_gbs or not facts.hardware.gpus:
        return facts.hardware.bandwidth_gbs
    return slowest_card_of_size(facts.hardware.vram_gb).bandwidth_gbs


def decode_tokens_per_s(facts: Facts, gpu_bytes: float, cpu_bytes: float) -> float:
    """Decode is memory-bandwidth bound: each token reads the weights (and KV cache) once, the part on
    the GPU at its bandwidth, the part in RAM at the CPU's."""
    gpu_bw = gpu_bandwidth_gbs(facts) * GB
    seconds = (gpu_bytes / gpu_bw if gpu_bw else 0.0) + cpu_bytes / (CPU_BANDWIDTH_GBS * GB)
    return 1 / seconds if seconds > 0 else 0.0


def decode_speed(facts: Facts, cand: gen.Candidate) -> float | None:
    """Tokens/s a serving candidate decodes at (None for training): a split's or an offload's own figure, else
    its weights (for a mixture of experts, the active experts' share) and its KV cache at the full context,
    each read once per token from the GPU, or from RAM on a CPU-only machine."""
    if cand.method != "infer" or cand.memory is None:
        return None
    if cand.tokens_per_s is not None:
        return cand.tokens_per_s
    arch = facts.model
    active = arch.param_count(active_only=True) / arch.param_count()
    read = cand.memory.breakdown["weights"] * active + cand.memory.breakdown["kv_cache"]
    return decode_tokens_per_s(facts, read, 0.0) if facts.hardware.gpus else decode_tokens_per_s(facts, 0.0, read)


SLOWER = " ms/token, slower than "
"""In the drop reason of a candidate that misses ``--latency-ms`` (the model ranking tells those apart)."""


def too_slow(facts: Facts, cand: gen.Candidate) -> str | None:
    """Why a serving candidate misses ``--latency-ms`` (None when it does not, or no target is set)."""
    speed = decode_speed(facts, cand) if facts.latency_ms else None
    if not speed or not facts.latency_ms or 1000 / speed <= facts.latency_ms:
        return None
    return f"~{1000 / speed:.0f}{SLOWER}{facts.latency_ms:g} ms"
